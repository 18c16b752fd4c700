"""conf/method/sft.yaml: supervised fine-tuning with TRL's SFTTrainer."""

from trl import SFTConfig, SFTTrainer

from posttrain.methods.common import TrainerInputs


def build_sft(inputs: TrainerInputs) -> SFTTrainer:
    return SFTTrainer(
        model=inputs.model,
        args=SFTConfig(**inputs.config_fields()),
        train_dataset=inputs.data.train,
        eval_dataset=inputs.data.eval,
        processing_class=inputs.tokenizer,
        peft_config=inputs.peft_config,
        callbacks=inputs.callbacks,
    )
