"""conf/method/sft.yaml and pretrain.yaml: supervised fine-tuning on completions, and causal-LM training
on raw text (pretraining; from a checkpoint, the MiniMind plan's mid-training), both with TRL's SFTTrainer."""

from trl import SFTConfig, SFTTrainer

from posttrain.methods.common import TrainerInputs


def build_sft(inputs: TrainerInputs) -> SFTTrainer:
    return SFTTrainer(
        model=inputs.model,
        args=inputs.trl_config(SFTConfig),
        train_dataset=inputs.data.train,
        eval_dataset=inputs.data.eval,
        processing_class=inputs.tokenizer,
        peft_config=inputs.peft_config,
        callbacks=inputs.callbacks,
    )
