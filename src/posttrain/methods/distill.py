"""conf/method/distill.yaml: knowledge distillation with TRL's DistillationTrainer. The student samples
completions for the dataset's prompts (on-policy) and learns to match the teacher's token distribution on
them (generalized Jensen-Shannon divergence; beta 0 = forward KL, 1 = reverse KL)."""

from trl import DistillationConfig, DistillationTrainer

from posttrain.errors import PosttrainError
from posttrain.methods.common import TrainerInputs
from posttrain.models.loading import load_trained


def build_distill(inputs: TrainerInputs) -> DistillationTrainer:
    teacher_path = inputs.cfg.method.get("teacher")
    if not teacher_path:
        raise PosttrainError("method=distill needs a teacher model", "set method.teacher=<run directory or model directory>")
    teacher, teacher_tokenizer = load_trained(str(teacher_path), inputs.model.dtype)
    if len(teacher_tokenizer) != len(inputs.tokenizer) or teacher_tokenizer.get_vocab() != inputs.tokenizer.get_vocab():
        raise PosttrainError(
            f"teacher {teacher_path} has a different tokenizer from the student",
            "distill between models that share a tokenizer (same model family)",
        )
    return DistillationTrainer(teacher_model=teacher.to(inputs.model.device), **inputs.trainer_kwargs(DistillationConfig))
