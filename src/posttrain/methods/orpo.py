"""conf/method/orpo.yaml: Odds Ratio Preference Optimization (SFT and preference in one loss, no reference
model) with trl.experimental's ORPOTrainer."""

from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from posttrain.methods.common import TrainerInputs


def build_orpo(inputs: TrainerInputs) -> ORPOTrainer:
    return ORPOTrainer(
        model=inputs.model,
        args=inputs.trl_config(ORPOConfig),
        train_dataset=inputs.data.train,
        eval_dataset=inputs.data.eval,
        processing_class=inputs.tokenizer,
        peft_config=inputs.peft_config,
        callbacks=inputs.callbacks,
    )
