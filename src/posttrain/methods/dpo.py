"""conf/method/dpo.yaml: direct preference optimization (and its loss variants) with TRL's DPOTrainer."""

from trl import DPOConfig, DPOTrainer

from posttrain.methods.common import TrainerInputs


def build_dpo(inputs: TrainerInputs) -> DPOTrainer:
    kwargs = inputs.trainer_kwargs(DPOConfig)
    return DPOTrainer(ref_model=inputs.reference_copy(kwargs["args"]), **kwargs)
