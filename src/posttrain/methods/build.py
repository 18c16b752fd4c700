"""The one trainer builder: a registry row and the run's TrainerInputs -> the method's TRL trainer.

Every TRL trainer takes the model, its TRL config, the data splits, the tokenizer, the LoRA config and the
callbacks (TrainerInputs.trainer_kwargs). What a row asks for beyond that is wired once each, here:
- reference: ref_model, a frozen copy with full fine-tuning (TrainerInputs.reference_copy);
- builds_reference: a trainer that loads its own reference from the policy's config path (GRPO, RLOO with
  beta != 0) loads the starting weights saved under the run directory (TrainerInputs.reference_on_disk);
- rewards: reward_funcs and their tokenizers from method.rewards (registry.REWARDS), weights in the config;
- teacher: teacher_model loaded from method.teacher, which must share the student's tokenizer.
A new TRL method that needs nothing else is one YAML in conf/method/ and one row in registry.METHODS.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from posttrain.errors import PosttrainError
from posttrain.hardware import GENERATION_PAD
from posttrain.methods.common import TrainerInputs
from posttrain.models import decode_attention
from posttrain.models.generation_padding import pad_prompts_for_generate
from posttrain.models.loading import load_trained
from posttrain.registry import Method, get_reward


def build_trainer(method: Method, inputs: TrainerInputs):
    trainer_class, config_class = method.trl_classes(padding_free=inputs.hardware.packing)
    needs = {}
    if method.teacher:
        needs["teacher_model"] = load_teacher(inputs, method.name)
    if method.rewards:
        funcs, tokenizers, weights = build_rewards(inputs.method_cfg.get("rewards"))
        needs.update(reward_funcs=funcs, reward_processing_classes=tokenizers)
    args = inputs.trl_config(config_class)
    if method.rewards:
        args.reward_weights = weights
    if method.reference:
        needs["ref_model"] = inputs.reference_copy(args)
    if method.builds_reference:
        with inputs.reference_on_disk(args):
            trainer = trainer_class(**inputs.trainer_kwargs(args), **needs)
    else:
        trainer = trainer_class(**inputs.trainer_kwargs(args), **needs)
    if inputs.hardware.compile_generation:
        # TRL builds its generation config with compilation off; the static cache (cache_implementation in the
        # config) is what transformers' generate compiles the decoding step for
        trainer.generation_config.disable_compile = False
        # compiled, transformers' SDPA repeats the cache's key/value heads at every decode step
        decode_attention.use_grouped_decode_attention(trainer.model)
        # one compiled decoding graph per padded prompt length; the training batch stays unpadded
        pad_prompts_for_generate(trainer.model, GENERATION_PAD)
    return trainer


def build_rewards(entries) -> tuple[list, list, list[float]]:
    """Reward functions (or models), their tokenizers (None for functions) and weights."""
    entries = OmegaConf.to_container(entries, resolve=True) if entries is not None else []
    if not entries:
        raise PosttrainError("method.rewards is empty", "list at least one reward, e.g. method.rewards=[{name: tictactoe}]")
    funcs, tokenizers, weights = [], [], []
    for entry in entries:
        entry = dict(entry)
        name = entry.pop("name", None)
        weights.append(float(entry.pop("weight", 1.0)))
        built = get_reward(str(name)).build(entry)
        if isinstance(built, tuple):  # a reward model and its tokenizer
            funcs.append(built[0])
            tokenizers.append(built[1])
        else:
            funcs.append(built)
            tokenizers.append(None)
    return funcs, tokenizers, weights


def load_teacher(inputs: TrainerInputs, method: str):
    """method.teacher (a run directory or model directory) on the student's device and in its dtype."""
    teacher_path = inputs.method_cfg.get("teacher")
    if not teacher_path:
        raise PosttrainError(f"method={method} needs a teacher model", "set method.teacher=<run directory or model directory>")
    teacher, teacher_tokenizer = load_trained(str(teacher_path), inputs.model.dtype)
    if len(teacher_tokenizer) != len(inputs.tokenizer) or teacher_tokenizer.get_vocab() != inputs.tokenizer.get_vocab():
        raise PosttrainError(
            f"teacher {teacher_path} has a different tokenizer from the student",
            "distill between models that share a tokenizer (same model family)",
        )
    return teacher.to(inputs.model.device)
