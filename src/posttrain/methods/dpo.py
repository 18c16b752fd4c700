"""conf/method/dpo.yaml: direct preference optimization (and its loss variants) with TRL's DPOTrainer."""

from trl import DPOConfig, DPOTrainer

from posttrain.methods.common import TrainerInputs


def build_dpo(inputs: TrainerInputs) -> DPOTrainer:
    return DPOTrainer(
        model=inputs.model,
        ref_model=inputs.reference_copy(),
        args=inputs.trl_config(DPOConfig),
        train_dataset=inputs.data.train,
        eval_dataset=inputs.data.eval,
        processing_class=inputs.tokenizer,
        peft_config=inputs.peft_config,
        callbacks=inputs.callbacks,
    )
