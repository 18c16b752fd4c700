"""conf/method/orpo.yaml: Odds Ratio Preference Optimization (SFT and preference in one loss, no reference
model) with trl.experimental's ORPOTrainer."""

from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from posttrain.methods.common import TrainerInputs


def build_orpo(inputs: TrainerInputs) -> ORPOTrainer:
    return ORPOTrainer(**inputs.trainer_kwargs(ORPOConfig))
