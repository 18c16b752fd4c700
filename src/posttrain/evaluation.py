"""The final evaluation of a run: the method's own metrics on the eval split, then the task evaluator the
eval group names (conf/eval/; a dataset names its own, e.g. dataset=tictactoe -> eval=tictactoe)."""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from omegaconf import DictConfig

from posttrain.evaluators import EvalOutput, EvalRequest
from posttrain.registry import EVALUATORS, Evaluator, Method, get_evaluator

log = logging.getLogger(__name__)

# results.json's numeric keys of every run (run/train.py), beside the eval split's eval/<metric> keys, whose
# names come from the trainer, and the evaluator's own (registry.EVALUATORS)
RUN_RESULT_KEYS = ("steps", "epochs", "train_seconds", "train_loss", "train_runtime", "tokens_per_second",
                   "mfu_percent", "peak_memory_gib", "planned_peak_memory_gib", "skipped_nonfinite_steps",
                   "skipped_bad_rows", "best_step")


# results.json keys whose better side is clear from the name
HIGHER_IS_BETTER = re.compile(r"(optimal_move_rate|legal_move_rate|win_rate|accuracy|accuracies|margins|f1|distance|"
                              r"distinct_\d|diversity|quality)$")
LOWER_IS_BETTER = re.compile(r"(loss|loss_rate|forfeit_rate|perplexity)$")


def better_direction(metric: str) -> str | None:
    """maximize / minimize for a metric whose better side is known from its name, else None."""
    if HIGHER_IS_BETTER.search(metric):
        return "maximize"
    if LOWER_IS_BETTER.search(metric):
        return "minimize"
    return None


def result_keys(evaluator: str | None) -> tuple[str, ...]:
    """The results.json keys a run with this evaluator writes, other than eval/<metric>."""
    row = EVALUATORS.get(evaluator or "none")
    return (*RUN_RESULT_KEYS, *(row.metrics if row else ()))


def _eval_split_metrics(trainer) -> dict:
    if trainer.eval_dataset is None:
        return {}
    metrics = trainer.evaluate()
    out = {}
    for key, value in metrics.items():
        if key.endswith(("_runtime", "_per_second", "num_tokens", "tokens_seen")) or key == "epoch":
            continue
        if key.removeprefix("eval_") in EVALUATOR_METRICS:  # added by the evaluator during training
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out["eval/" + key.removeprefix("eval_")] = value
    return out


EVALUATOR_METRICS = {metric for row in EVALUATORS.values() for metric in row.metrics}


def describe(results: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items())


@dataclass(frozen=True)
class Evaluation:
    """The evaluation of a run, resolved once (resolve_evaluation)."""

    # the method's own metrics on the eval split
    eval_split: bool
    # the task evaluator (registry row) and what it is asked
    evaluator: Evaluator
    request: EvalRequest

    @property
    def training_limit(self) -> int:
        """Items the evaluator scores at each training.eval_steps evaluation (0: only at the end)."""
        if self.evaluator.function is None:
            return 0
        return int(self.request.settings.get("training_limit") or 0)

    def run_evaluator(self, model, tokenizer, limit: int | None = None) -> EvalOutput | None:
        """The evaluator's output for this model (None when there is no task or the model cannot sample)."""
        if self.evaluator.function is None or (self.evaluator.generates and not model.can_generate()):
            return None
        request = self.request if limit is None else EvalRequest(self.request.settings, self.request.dataset,
                                                                 self.request.seed, limit)
        return self.evaluator.run(model, tokenizer, request)

    def evaluate(self, trainer, tokenizer, run_dir) -> dict:
        """The end of a run: the eval split's metrics and the evaluator's; its samples go to samples.jsonl."""
        results = {}
        if self.eval_split and trainer.eval_dataset is not None:
            log.info("evaluation: the method's metrics on %d eval rows", len(trainer.eval_dataset))
            results = _eval_split_metrics(trainer)
        if self.evaluator.function is not None:
            log.info("evaluation: eval=%s (%s)", self.evaluator.name, self.evaluator.summary)
        output = self.run_evaluator(trainer.accelerator.unwrap_model(trainer.model), tokenizer)
        if output is not None:
            results.update(output.metrics)
            run_dir.write_samples(output.samples)
        log.info("evaluation: %s", describe(results))
        return results


def resolve_evaluation(method: Method, eval_cfg: DictConfig | None, dataset: DictConfig, eval_steps: int,
                       seed: int) -> Evaluation:
    """`method`: the registry row; `eval_cfg`: the eval group; `dataset`: the dataset group;
    `eval_steps`: training.eval_steps."""
    # Methods that sample while training evaluate by sampling every eval prompt several times: at the end
    # only when they also evaluated during training (eval_steps > 0); the task evaluation covers the rest.
    eval_split = not (method.samples_while_training and not eval_steps)
    request = EvalRequest.from_config(eval_cfg, dataset, seed)
    return Evaluation(eval_split, get_evaluator(str(request.settings.get("name", "none"))), request)


def best_checkpoint_fields(metric: str, direction: str) -> dict:
    """TrainingArguments that keep the best checkpoint on `metric` (training.keep_best) and load it at the end."""
    if direction == "auto":
        direction = better_direction(metric) or "maximize"  # check_keep_best refuses an unknown one first
    return {"metric_for_best_model": "eval_" + metric.removeprefix("eval/"), "load_best_model_at_end": True,
            "greater_is_better": direction == "maximize"}


def check_keep_best(training: DictConfig, has_eval_split: bool | None = None) -> None:
    """training.keep_best needs evaluations during training that save a checkpoint each time, and a direction."""
    from posttrain.errors import PosttrainError

    metric = training.get("keep_best")
    if not metric:
        return
    if not int(training.eval_steps):
        raise PosttrainError(f"training.keep_best={metric} needs evaluations during training (training.eval_steps=0)",
                             "set training.eval_steps=N (and training.save_steps to a multiple of it)")
    if not int(training.save_steps) or int(training.save_steps) % int(training.eval_steps):
        raise PosttrainError(
            f"training.keep_best={metric} keeps a saved checkpoint, but training.save_steps={training.save_steps} "
            f"is not a multiple of training.eval_steps={training.eval_steps}",
            f"set training.save_steps={training.eval_steps}")
    if training.keep_best_direction == "auto" and better_direction(str(metric).removeprefix("eval/")) is None:
        raise PosttrainError(f"which way training.keep_best={metric} is better is not known from its name",
                             "set training.keep_best_direction=maximize or minimize")
    if has_eval_split is False:
        raise PosttrainError(f"training.keep_best={metric} needs an eval split, and the dataset has none",
                             "set dataset.eval_fraction > 0 or dataset.eval_path=FILE")
