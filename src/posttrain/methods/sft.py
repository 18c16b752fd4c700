"""conf/method/sft.yaml and pretrain.yaml: supervised fine-tuning on completions, and causal-LM training
on raw text (pretraining; from a checkpoint, the MiniMind plan's mid-training), both with TRL's SFTTrainer."""

from trl import SFTConfig, SFTTrainer

from posttrain.methods.common import TrainerInputs


def build_sft(inputs: TrainerInputs) -> SFTTrainer:
    return SFTTrainer(**inputs.trainer_kwargs(SFTConfig))
