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

    @property
    def fields(self) -> tuple[str, ...]:
        return FORMS[self.form]

    def build(self, inputs):
        module_name, function_name = self.factory.split(":")
        module = importlib.import_module(f"posttrain.methods.{module_name}")
        return getattr(module, function_name)(inputs)


_DPO_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sft", "sft:build_sft", "completion", False, ("mean_token_accuracy",),
               "supervised fine-tuning on completions (TRL SFTTrainer)"),
        Method("dpo", "dpo:build_dpo", "preference", True, _DPO_METRICS,
               "direct preference optimization and its loss variants (TRL DPOTrainer)"),
    )
}


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
