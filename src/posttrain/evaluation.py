"""The final evaluation of a run: the method's own metrics on the eval split, then the dataset's task
evaluation when it has one (tic-tac-toe: held-out positions and full games)."""

from __future__ import annotations

import logging
import math

from omegaconf import DictConfig

log = logging.getLogger(__name__)


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


def evaluate_run(cfg: DictConfig, trainer, tokenizer) -> dict:
    task = cfg.dataset.get("task")
    from posttrain.registry import get_method

    samples = get_method(cfg.method.name).samples_while_training
    # Such methods evaluate by sampling every eval prompt several times: at the end only when they also
    # evaluated during training (training.eval_steps > 0); the task evaluation covers the rest.
    results = {} if samples and not cfg.training.eval_steps else _eval_split_metrics(trainer)
    generates = trainer.accelerator.unwrap_model(trainer.model).can_generate()
    if task == "tictactoe" and generates:
        from posttrain.tictactoe.evaluate import evaluate

        model = trainer.accelerator.unwrap_model(trainer.model)
        results.update(
            evaluate(model, tokenizer, cfg.dataset.eval_fraction, cfg.dataset.eval_games, cfg.dataset.thoughts, cfg.seed)
        )
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items()}
    log.info("evaluation: %s", shown)
    return results
