"""conf/method/grpo.yaml and rloo.yaml: online RL from prompts with TRL's GRPOTrainer and RLOOTrainer. The
policy samples completions, the configured rewards score them (registry.REWARDS), and the policy is pushed
towards completions that score above their group's average."""

from __future__ import annotations

from omegaconf import OmegaConf
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from posttrain.errors import PosttrainError
from posttrain.methods.common import TrainerInputs
from posttrain.registry import get_reward


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


def _online(trainer_class, config_class, inputs: TrainerInputs):
    funcs, tokenizers, weights = build_rewards(inputs.cfg.method.get("rewards"))
    kwargs = inputs.trainer_kwargs(config_class)
    kwargs["args"].reward_weights = weights
    return trainer_class(reward_funcs=funcs, reward_processing_classes=tokenizers, **kwargs)


def build_grpo(inputs: TrainerInputs) -> GRPOTrainer:
    return _online(GRPOTrainer, GRPOConfig, inputs)


def build_rloo(inputs: TrainerInputs) -> RLOOTrainer:
    return _online(RLOOTrainer, RLOOConfig, inputs)
