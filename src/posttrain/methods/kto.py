"""conf/method/kto.yaml: Kahneman-Tversky Optimization from unpaired desirable/undesirable completions
with TRL's KTOTrainer (preference pairs are split into one of each)."""

from trl import KTOConfig, KTOTrainer

from posttrain.methods.common import TrainerInputs


def build_kto(inputs: TrainerInputs) -> KTOTrainer:
    kwargs = inputs.trainer_kwargs(KTOConfig)
    return KTOTrainer(ref_model=inputs.reference_copy(kwargs["args"]), **kwargs)
