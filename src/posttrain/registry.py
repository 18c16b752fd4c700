"""Every post-training method posttrain can run, in one list.

A method is one YAML in conf/method/ (its `name` matches an entry here) and one factory in
posttrain/methods/ that turns the prepared model, tokenizer and data into a TRL trainer. The entry says
which row form the method trains on (the data layer validates and converts to it) and which metrics it logs.
Factories are imported lazily so that listing methods or validating a config never imports TRL.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from posttrain.errors import PosttrainError

# Row forms a method can ask for, with the fields each must have.
FORMS = {
    "completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "prompt": ("prompt",),
    "text": ("text",),
}


@dataclass(frozen=True)
class Method:
    name: str
    # "module:function" under posttrain.methods that builds the trainer
    factory: str
    # the row form it trains on (a key of FORMS)
    form: str
    # whether the top-level dpo_beta knob reaches it (and so belongs in run names)
    uses_beta: bool
    # metrics it logs beyond loss, learning rate, grad norm and tokens/s
    metrics: tuple[str, ...]
    summary: str
    # what it trains on top of the network: causal_lm, or sequence_classification (one score: reward models)
    head: str = "causal_lm"
    # whether it samples completions while training (online RL, on-policy distillation): evaluating its eval
    # split means sampling too, so it is done only when asked for (training.eval_steps > 0)
    samples_while_training: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        return FORMS[self.form]

    def build(self, inputs):
        module_name, function_name = self.factory.split(":")
        module = importlib.import_module(f"posttrain.methods.{module_name}")
        return getattr(module, function_name)(inputs)


_PAIR_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
_ONLINE_METRICS = ("reward", "reward_std", "rewards/<name>/mean", "completions/mean_length", "kl")

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sft", "sft:build_sft", "completion", False, ("mean_token_accuracy",),
               "supervised fine-tuning on completions (TRL SFTTrainer)"),
        Method("pretrain", "sft:build_sft", "text", False, ("mean_token_accuracy",),
               "causal-LM training on raw text; from a checkpoint, mid-training (TRL SFTTrainer)"),
        Method("dpo", "dpo:build_dpo", "preference", True, _PAIR_METRICS,
               "direct preference optimization and its loss variants (TRL DPOTrainer)"),
        Method("simpo", "cpo:build_cpo", "preference", False, (*_PAIR_METRICS, "nll_loss"),
               "SimPO, reference-free length-normalised preference loss (trl.experimental CPOTrainer)"),
        Method("cpo", "cpo:build_cpo", "preference", True, (*_PAIR_METRICS, "nll_loss"),
               "contrastive preference optimization (trl.experimental CPOTrainer)"),
        Method("orpo", "orpo:build_orpo", "preference", False, (*_PAIR_METRICS, "log_odds_ratio", "nll_loss"),
               "odds-ratio preference optimization, SFT and preference in one loss (trl.experimental ORPOTrainer)"),
        Method("kto", "kto:build_kto", "unpaired", True, ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl"),
               "Kahneman-Tversky optimization from unpaired good/bad completions (TRL KTOTrainer)"),
        Method("reward", "reward:build_reward", "preference", False, ("accuracy", "margin", "mean_reward"),
               "reward model from preference pairs (TRL RewardTrainer)", head="sequence_classification"),
        Method("grpo", "online:build_grpo", "prompt", False, _ONLINE_METRICS,
               "group relative policy optimization, online RL with rewards (TRL GRPOTrainer)",
               samples_while_training=True),
        Method("rloo", "online:build_rloo", "prompt", False, _ONLINE_METRICS,
               "REINFORCE leave-one-out, online RL with rewards (TRL RLOOTrainer)",
               samples_while_training=True),
        Method("distill", "distill:build_distill", "prompt", False, ("entropy",),
               "on-policy knowledge distillation from a teacher model (TRL DistillationTrainer)",
               samples_while_training=True),
    )
}


@dataclass(frozen=True)
class Reward:
    name: str
    # "function" in posttrain.rewards that builds it from the reward entry's fields
    builder: str
    summary: str

    def build(self, fields: dict):
        from posttrain import rewards

        return getattr(rewards, self.builder)(**fields)


# Rewards for the online methods (method.rewards lists them by name with a weight and their fields).
REWARDS: dict[str, Reward] = {
    r.name: r
    for r in (
        Reward("tictactoe", "tictactoe_rules", "the rules: 1 optimal move, 0 legal move, -1 illegal or no move"),
        Reward("format", "format_match", "1 when the completion matches `pattern` (a regex), else 0"),
        Reward("exact_match", "exact_match", "1 when the answer equals the row's `column` (after `answer_prefix`)"),
        Reward("reward_model", "reward_model", "the score of a trained reward model (`path`: a method=reward run)"),
    )
}


def get_reward(name: str) -> Reward:
    try:
        return REWARDS[name]
    except KeyError:
        raise PosttrainError(f"unknown reward '{name}'", f"choose one of: {', '.join(sorted(REWARDS))}") from None


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise PosttrainError(
            f"unknown method '{name}'", f"choose one of: {', '.join(sorted(METHODS))}"
        ) from None


def describe_methods() -> str:
    """One line per method, for `python -m posttrain --help`."""
    width = max(len(name) for name in METHODS)
    return "\n".join(
        f"  {m.name:<{width}}  {m.summary}; data: {', '.join(m.fields)}" for m in METHODS.values()
    )
