"""The final evaluation of a run: the method's own metrics on the eval split, then the dataset's task
evaluation when it has one (tic-tac-toe: held-out positions and full games)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from omegaconf import DictConfig

from posttrain.registry import Method

log = logging.getLogger(__name__)

# results.json's numeric keys of every run (run/train.py), beside the eval split's eval/<metric> keys, whose
# names come from the trainer
RUN_RESULT_KEYS = ("steps", "epochs", "train_seconds", "train_loss", "train_runtime", "tokens_per_second",
                   "mfu_percent", "peak_memory_gib", "planned_peak_memory_gib", "skipped_nonfinite_steps",
                   "skipped_bad_rows")
# the keys each task evaluation adds (tictactoe/evaluate.py)
TASK_RESULT_KEYS = {
    "tictactoe": ("eval_positions", "games_per_opponent", "legal_move_rate", "optimal_move_rate",
                  *(f"vs_{opponent}_{outcome}_rate" for opponent in ("random", "perfect")
                    for outcome in ("win", "draw", "loss", "forfeit"))),
}


def result_keys(task: str | None) -> tuple[str, ...]:
    """The results.json keys a run with this dataset task writes, other than eval/<metric>."""
    return (*RUN_RESULT_KEYS, *TASK_RESULT_KEYS.get(task or "", ()))


def _eval_split_metrics(trainer) -> dict:
    if trainer.eval_dataset is None:
        return {}
    metrics = trainer.evaluate()
    out = {}
    for key, value in metrics.items():
        if key.endswith(("_runtime", "_per_second", "num_tokens", "tokens_seen")) or key == "epoch":
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out["eval/" + key.removeprefix("eval_")] = value
    return out


@dataclass(frozen=True)
class Evaluator:
    """The final evaluation of a run, resolved once (resolve_evaluator)."""

    # the method's own metrics on the eval split
    eval_split: bool
    # the dataset's task evaluation (tictactoe), or None
    task: str | None = None
    # tic-tac-toe: the dataset's eval_fraction, eval_games and thoughts, and the run's seed
    task_settings: tuple = ()

    def evaluate(self, trainer, tokenizer) -> dict:
        results = _eval_split_metrics(trainer) if self.eval_split else {}
        model = trainer.accelerator.unwrap_model(trainer.model)
        if self.task == "tictactoe" and model.can_generate():
            from posttrain.tictactoe.evaluate import evaluate

            results.update(evaluate(model, tokenizer, *self.task_settings))
        log.info("evaluation: %s", ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in results.items()))
        return results


def resolve_evaluator(method: Method, dataset: DictConfig, eval_steps: int, seed: int) -> Evaluator:
    """`method`: the registry row; `dataset`: the dataset group; `eval_steps`: training.eval_steps."""
    # Methods that sample while training evaluate by sampling every eval prompt several times: at the end
    # only when they also evaluated during training (eval_steps > 0); the task evaluation covers the rest.
    eval_split = not (method.samples_while_training and not eval_steps)
    if dataset.get("task") == "tictactoe":
        return Evaluator(eval_split, "tictactoe", (dataset.eval_fraction, dataset.eval_games, dataset.thoughts, seed))
    return Evaluator(eval_split)
