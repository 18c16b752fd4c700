"""conf/method/cpo.yaml and simpo.yaml: Contrastive Preference Optimization and SimPO (CPO's loss_type
simpo with cpo_alpha 0), reference-free, with trl.experimental's CPOTrainer."""

from trl.experimental.cpo import CPOConfig, CPOTrainer

from posttrain.methods.common import TrainerInputs


def build_cpo(inputs: TrainerInputs) -> CPOTrainer:
    return CPOTrainer(**inputs.trainer_kwargs(CPOConfig))
