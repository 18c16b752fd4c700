"""conf/method/reward.yaml: a reward model (one scalar score per sequence) trained on preference pairs with
TRL's RewardTrainer (Bradley-Terry loss). Its final/ serves GRPO/RLOO as the reward_model reward."""

from trl import RewardConfig, RewardTrainer

from posttrain.methods.common import TrainerInputs


def build_reward(inputs: TrainerInputs) -> RewardTrainer:
    return RewardTrainer(**inputs.trainer_kwargs(RewardConfig))
