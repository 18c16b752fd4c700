"""conf/method/cpo.yaml and simpo.yaml: Contrastive Preference Optimization and SimPO (CPO's loss_type
simpo with cpo_alpha 0), reference-free, with trl.experimental's CPOTrainer."""

from trl.experimental.cpo import CPOConfig, CPOTrainer

from posttrain.methods.common import TrainerInputs


def build_cpo(inputs: TrainerInputs) -> CPOTrainer:
    return CPOTrainer(
        model=inputs.model,
        args=inputs.trl_config(CPOConfig),
        train_dataset=inputs.data.train,
        eval_dataset=inputs.data.eval,
        processing_class=inputs.tokenizer,
        peft_config=inputs.peft_config,
        callbacks=inputs.callbacks,
    )
