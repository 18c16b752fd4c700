"""Every post-training method posttrain can run, in one table.

A method is one YAML in conf/method/ (its `name` matches a row here) and one row: the TRL trainer and config
classes it builds, the row form it trains on (the data layer validates and converts to it), the metrics it
logs, and what its trainer needs beyond the model, its TRL config, the data, the tokenizer, the LoRA config
and the callbacks: a reference model, rewards, a teacher, a sequence-classification head.
posttrain.methods.build assembles every trainer from its row; the wiring of each need (reference copy,
rewards, teacher) is written once there, not once per method.

A row names its classes as "module:Class" strings, the way torchtune's recipe registry names recipe files:
a reader follows `trl.experimental.cpo:CPOTrainer` straight to the class, listing methods or validating a
config never imports TRL (`python -m posttrain --help` stays fast), and tests/methods/test_registry.py imports
every named class, so a class TRL renames fails a fast test rather than a run.
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
    # the TRL trainer and its config dataclass, "module:Class"
    trainer: str
    config: str
    # the row form it trains on (a key of FORMS)
    form: str
    # metrics it logs beyond loss, learning rate, grad norm and tokens/s
    metrics: tuple[str, ...]
    summary: str
    # the learning-rate table's column (learning_rate.py): supervised, preference or online_rl
    family: str
    # whether the top-level dpo_beta knob reaches it (and so belongs in run names)
    uses_beta: bool = False
    # what it trains on top of the network: causal_lm, or sequence_classification (one score: reward models)
    head: str = "causal_lm"
    # whether it samples completions while training (online RL, on-policy distillation): evaluating its eval
    # split means sampling too, so it is done only when asked for (training.eval_steps > 0)
    samples_while_training: bool = False
    # the trainer takes ref_model: a frozen copy with full fine-tuning, None with LoRA (TRL scores the base
    # with the adapter disabled) or with a precomputed reference
    reference: bool = False
    # the trainer builds its own reference (with a KL term, beta != 0) by loading the policy's config path,
    # which a random-init or merged model lacks: posttrain saves the starting weights for it to load instead
    builds_reference: bool = False
    # the trainer takes reward_funcs (and their tokenizers and weights) built from method.rewards
    rewards: bool = False
    # the trainer takes teacher_model, loaded from method.teacher (same tokenizer as the student)
    teacher: bool = False
    # TRL scores its tokens through TRL's fused LM head (trl.trainer.utils.add_fused_lm_head): the logits are
    # never materialised whole (the plan's memory model reads this)
    fused_lm_head: bool = False
    # posttrain's padding-free subclass of the trainer ("module:Class"), used when hardware.packing is on
    padding_free_trainer: str | None = None
    # its TRL config has steps_per_generation: one generate call can serve several optimizer steps
    # (hardware.rollout_steps)
    batched_rollouts: bool = False

    @property
    def fields(self) -> tuple[str, ...]:
        return FORMS[self.form]

    def trl_classes(self, padding_free: bool = False) -> tuple[type, type]:
        """The trainer (its padding-free subclass when asked for and the row has one) and config classes,
        imported now (this imports TRL)."""
        trainer = self.padding_free_trainer if padding_free and self.padding_free_trainer else self.trainer
        return _import(trainer), _import(self.config)

    def build(self, inputs):
        """The method's TRL trainer, assembled from this row (posttrain.methods.build)."""
        from posttrain.methods.build import build_trainer

        return build_trainer(self, inputs)


def _import(path: str):
    module_name, attribute = path.split(":")
    return getattr(importlib.import_module(module_name), attribute)


_PAIR_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
_ONLINE_METRICS = ("reward", "reward_std", "rewards/<name>/mean", "completions/mean_length", "kl")

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sft", "trl:SFTTrainer", "trl:SFTConfig", "completion", ("mean_token_accuracy",),
               "supervised fine-tuning on completions",
               fused_lm_head=True, family="supervised",
               padding_free_trainer="posttrain.methods.padding_free:PaddingFreeSFTTrainer"),
        Method("pretrain", "trl:SFTTrainer", "trl:SFTConfig", "text", ("mean_token_accuracy",),
               "causal-LM training on raw text; from a checkpoint, mid-training",
               fused_lm_head=True, family="supervised",
               padding_free_trainer="posttrain.methods.padding_free:PaddingFreeSFTTrainer"),
        Method("dpo", "trl:DPOTrainer", "trl:DPOConfig", "preference", _PAIR_METRICS,
               "direct preference optimization and its loss variants",
               fused_lm_head=True, family="preference", uses_beta=True, reference=True,
               padding_free_trainer="posttrain.methods.padding_free:PaddingFreeDPOTrainer"),
        Method("simpo", "trl.experimental.cpo:CPOTrainer", "trl.experimental.cpo:CPOConfig", "preference",
               (*_PAIR_METRICS, "nll_loss"), "SimPO, reference-free length-normalised preference loss",
               family="preference",
               padding_free_trainer="posttrain.methods.padding_free_logits:PaddingFreeCPOTrainer"),
        Method("cpo", "trl.experimental.cpo:CPOTrainer", "trl.experimental.cpo:CPOConfig", "preference",
               (*_PAIR_METRICS, "nll_loss"), "contrastive preference optimization",
               family="preference", uses_beta=True,
               padding_free_trainer="posttrain.methods.padding_free_logits:PaddingFreeCPOTrainer"),
        Method("orpo", "trl.experimental.orpo:ORPOTrainer", "trl.experimental.orpo:ORPOConfig", "preference",
               (*_PAIR_METRICS, "log_odds_ratio", "nll_loss"),
               "odds-ratio preference optimization, SFT and preference in one loss",
               family="preference",
               padding_free_trainer="posttrain.methods.padding_free_logits:PaddingFreeORPOTrainer"),
        Method("kto", "trl:KTOTrainer", "trl:KTOConfig", "unpaired",
               ("rewards/chosen", "rewards/rejected", "rewards/margins", "kl"),
               "Kahneman-Tversky optimization from unpaired good/bad completions",
               fused_lm_head=True, family="preference", uses_beta=True, reference=True,
               padding_free_trainer="posttrain.methods.padding_free:PaddingFreeKTOTrainer"),
        Method("reward", "trl:RewardTrainer", "trl:RewardConfig", "preference", ("accuracy", "margin", "mean_reward"),
               "reward model from preference pairs",
               family="supervised", head="sequence_classification"),
        Method("grpo", "trl:GRPOTrainer", "trl:GRPOConfig", "prompt", _ONLINE_METRICS,
               "group relative policy optimization, online RL with rewards",
               fused_lm_head=True, family="online_rl", samples_while_training=True, rewards=True,
               builds_reference=True, batched_rollouts=True),
        Method("rloo", "trl:RLOOTrainer", "trl:RLOOConfig", "prompt", _ONLINE_METRICS,
               "REINFORCE leave-one-out, online RL with rewards",
               fused_lm_head=True, family="online_rl", samples_while_training=True, rewards=True,
               builds_reference=True, batched_rollouts=True),
        Method("online_dpo", "trl.experimental.online_dpo:OnlineDPOTrainer",
               "trl.experimental.online_dpo:OnlineDPOConfig", "prompt",
               (*_PAIR_METRICS, "objective/scores", "objective/scores_margin", "objective/kl"),
               "online DPO: two sampled completions per prompt, the rewards pick chosen and rejected",
               family="preference", uses_beta=True, samples_while_training=True, reference=True, rewards=True),
        Method("distill", "trl:DistillationTrainer", "trl:DistillationConfig", "prompt", ("entropy",),
               "on-policy knowledge distillation from a teacher model",
               family="supervised", samples_while_training=True, teacher=True),
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


@dataclass(frozen=True)
class Evaluator:
    """A task evaluation (conf/eval/<name>.yaml): what it measures, the function that does it, its metrics."""

    name: str
    # "module:function" taking (model, tokenizer, posttrain.evaluators.EvalRequest) -> EvalOutput; None: no task
    function: str | None
    summary: str
    # the results.json keys it writes, its headline metric first (the end-of-run table and the report lead
    # with it; training.keep_best defaults to it)
    metrics: tuple[str, ...] = ()
    # it samples from the model, so a model that cannot generate (a reward model) skips it
    generates: bool = True
    # "module:function" taking the eval settings (a dict) and raising PosttrainError for settings that would
    # fail at the end of training; run before any model loads
    check: str | None = None

    def run(self, model, tokenizer, request):
        """The evaluator's EvalOutput for this model (imports the evaluator's module now)."""
        return _import(self.function)(model, tokenizer, request)

    def check_settings(self, settings: dict) -> None:
        if self.check:
            _import(self.check)(settings)


_GAME_METRICS = tuple(f"vs_{opponent}_{outcome}_rate" for opponent in ("random", "perfect")
                      for outcome in ("win", "draw", "loss", "forfeit"))

# Task evaluations a run can end with (eval=<name>; a dataset names its own) and posttrain.evaluate runs.
EVALUATORS: dict[str, Evaluator] = {
    e.name: e
    for e in (
        Evaluator("none", None, "no task evaluation: the method's own metrics on the eval split only"),
        Evaluator("tictactoe", "posttrain.evaluators.tictactoe:evaluate",
                  "held-out positions (legal, optimal moves) and games against a random and a perfect player",
                  ("optimal_move_rate", "legal_move_rate", "eval_positions", "games_per_opponent", *_GAME_METRICS)),
        Evaluator("classification", "posttrain.evaluators.classification:evaluate",
                  "each eval row's label chosen as the one the model scores most likely: accuracy, macro-F1, "
                  "confusion matrix", ("label_accuracy", "label_macro_f1", "labelled_rows"), generates=False),
        Evaluator("diversity", "posttrain.evaluators.diversity:evaluate",
                  "k samples per prompt: mean pairwise embedding distance, distinct-1/2, length, per creativity "
                  "bucket", ("embedding_diversity", "distinct_1", "distinct_2", "mean_completion_tokens",
                             "diversity_prompts", "judge_quality"), check="posttrain.evaluators.diversity:check"),
        Evaluator("preference", "posttrain.evaluators.preference:evaluate",
                  "held-out pairs: how often and by how much the model (its implicit reward, or a reward model's "
                  "score) prefers chosen to rejected; with a judge or reward model, the win rate of its answers over its "
                  "base's", ("preference_accuracy", "preference_margin", "preference_pairs", "preference_win_rate"),
                  generates=False, check="posttrain.evaluators.preference:check"),
        Evaluator("lm_eval", "posttrain.evaluators.lm_eval:evaluate",
                  "EleutherAI lm-evaluation-harness tasks by name, or a local task YAML (pip install -e .[eval])",
                  check="posttrain.evaluators.lm_eval:check"),
    )
}


def get_evaluator(name: str) -> Evaluator:
    try:
        return EVALUATORS[name]
    except KeyError:
        raise PosttrainError(f"unknown evaluator eval={name}",
                             f"choose one of: {', '.join(sorted(EVALUATORS))}") from None


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
        f"  {m.name:<{width}}  {m.summary} ({m.trainer.replace(':', '.')}); data: {', '.join(m.fields)}"
        for m in METHODS.values()
    )
