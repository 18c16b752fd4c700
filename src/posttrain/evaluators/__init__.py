"""Task evaluators, one per option of conf/eval/ (posttrain.registry.EVALUATORS lists them).

An evaluator is a function `evaluate(model, tokenizer, request) -> EvalOutput`: it scores the model on its
task and returns named metrics (results.json keys, `eval/<metric>` lines of metrics.jsonl during training)
and the generations or choices it scored (samples.jsonl in the run directory), so a reader can check them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class EvalRequest:
    """What an evaluator is asked to do."""

    # the eval group (conf/eval/<name>.yaml) as plain values
    settings: dict
    # the dataset group: its eval split and, for a built-in task, its settings
    dataset: DictConfig
    # seed of every random choice (sampling, games)
    seed: int
    # at most this many items (positions, prompts, rows); None = all the evaluator's items
    limit: int | None = None

    @classmethod
    def from_config(cls, eval_cfg: DictConfig | None, dataset: DictConfig, seed: int, **settings) -> EvalRequest:
        """The request of the eval group `eval_cfg` (None: eval=none), with `settings` set over its fields."""
        values = OmegaConf.to_container(eval_cfg, resolve=True) if eval_cfg is not None else {"name": "none"}
        return cls({**values, **settings}, dataset, int(seed))


@dataclass
class EvalOutput:
    # results.json keys -> values
    metrics: dict
    # one record per scored item: its prompt, what the model produced and how it scored
    samples: list[dict] = field(default_factory=list)
