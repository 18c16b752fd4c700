"""Sweeps and hyperparameter search: the checks before a sweep launches, what a failed job returns, and the
end-of-sweep summary.

Hyperparameter search uses Hydra's Optuna sweeper (hydra/sweeper=optuna, or the preset optuna_tictactoe).
Each job returns results[objective] (run/job.py). A failed job returns the worst value instead (-inf when
maximizing, +inf when minimizing): the search goes on and steers away from settings that fail. (None would
make the trial a failed Optuna trial, and a search whose every trial failed would end in a traceback, "No
trials are completed yet"; NaN crashes hydra-optuna-sweeper 1.3.0 at once.)
Before anything launches, the command line is checked here: an Optuna sweep needs an objective, and its
direction must optimize that objective the right way round where the better side of the metric is known
(the sweeper's default direction, minimize, is wrong for a rate).

At the end of every sweep, SweepSummary (a Hydra callback, run in the launching process whatever the
launcher) prints completed / failed / skipped jobs with each failure's one-line cause, and ends the command
with exit status 1 when a job did not complete.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from posttrain.errors import PosttrainError
from posttrain.evaluation import better_direction, result_keys
from posttrain.rundir import SweepDir

# --- before launch: the search's objective and direction ------------------------------------------------

def _name(direction) -> str:
    return str(getattr(direction, "name", direction)).lower()


def check_objective_key(objective: str, evaluator: str | None) -> None:
    """The objective is a key results.json will have: one every run writes, one its evaluator writes, or an
    eval/<metric> of the eval split (named by the trainer, so not checked)."""
    import difflib


    keys = result_keys(evaluator)
    if objective.startswith(("eval/", "lm_eval/")) or objective in keys:  # named by the trainer / the harness
        return
    close = difflib.get_close_matches(objective, [*keys, "eval/loss"], n=1)
    raise PosttrainError(
        f"objective '{objective}' is not a key results.json will have (eval={evaluator})",
        (f"did you mean objective={close[0]}? " if close else "")
        + f"keys: eval/<metric> (e.g. eval/loss), {', '.join(keys)}",
    )


def check_search(cfg: DictConfig) -> None:
    """An Optuna sweep (cfg composed with its hydra section) has an objective and optimizes it the right way."""
    target = str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="") or "")
    if "optuna" not in target.lower():
        return
    objective = cfg.get("objective")
    if not objective:
        raise PosttrainError(
            "the optuna sweeper needs an objective: every trial would return nothing to optimize",
            "add objective=<a results.json key> with its direction, e.g. objective=optimal_move_rate "
            "hydra.sweeper.direction=maximize (hydra/sweeper=optuna_tictactoe maximizes)",
        )
    if cfg.get("dataset") is not None:  # a composed run config: its evaluator says which keys results.json gets
        check_objective_key(str(objective), OmegaConf.select(cfg, "eval.name", default=None))
    direction = cfg.hydra.sweeper.get("direction")
    if isinstance(direction, (list, ListConfig)):
        raise PosttrainError(
            f"hydra.sweeper.direction lists {len(direction)} directions, but a job returns one objective ({objective})",
            "give one direction: hydra.sweeper.direction=maximize or minimize",
        )
    better = better_direction(str(objective))
    if better and _name(direction) != better:
        side = "higher" if better == "maximize" else "lower"
        raise PosttrainError(
            f"the optuna sweeper would {_name(direction)} {objective}, where {side} is better",
            f"hydra.sweeper.direction={better}",
        )


# --- during the sweep: what a failed job returns ---------------------------------------------------------

def failed_job_value(cfg: DictConfig, sweeper: DictConfig | None) -> float | None:
    """What a failed job of a sweep returns: the worst value when a sweeper optimizes an objective, else None."""
    direction = sweeper.get("direction") if sweeper is not None else None
    if not cfg.get("objective") or direction is None or isinstance(direction, (list, ListConfig)):
        return None
    return -math.inf if _name(direction) == "maximize" else math.inf


# --- after the sweep: the summary and the exit status ----------------------------------------------------

def summarize(sweep_dir: Path, launched_at: str, objective: str | None = None) -> tuple[str, list[str]]:
    """The summary's text and one line per job that did not complete (a job completed before launched_at
    was skipped: it was already complete)."""
    completed, failed, skipped, other = [], [], [], []
    for job in SweepDir(sweep_dir).jobs():
        status = job.status()
        state = status.get("state")
        if state == "completed" and status.get("updated", "") < launched_at:
            skipped.append(job.name)
        elif state == "completed":
            completed.append(job.name)
        elif state == "failed":
            failed.append(f"{job.name}: {status.get('error', 'unknown error')}")
        else:
            other.append(f"{job.name}: {state or 'no status'}")
    lines = [
        f"sweep {sweep_dir}: {len(completed)} completed, {len(failed)} failed, {len(skipped)} skipped "
        f"(already complete){f', {len(other)} unfinished' if other else ''}"
    ]
    lines += [f"  failed  {line}" for line in failed] + [f"  unfinished  {line}" for line in other]
    best = best_job(sweep_dir, objective)
    if best:
        lines.append(f"  best    {best}")
    lines.append(f"  report  python -m posttrain.report {sweep_dir}")
    return "\n".join(lines), failed + other


def best_job(sweep_dir: Path, objective: str | None = None) -> str:
    """'<job>: <metric> <value>' for the completed job best on the objective (else on the first headline
    metric the jobs have, in its known direction); '' when no job has it."""
    from posttrain.summary import HEADLINE_METRICS

    results = {}
    for job in SweepDir(sweep_dir).jobs():
        if job.is_completed() and job.results.exists():
            results[job.name] = job.read_results()
    present = [m for m in ([objective] if objective else []) + list(HEADLINE_METRICS)
               if any(isinstance(r.get(m), (int, float)) for r in results.values())]
    if not present:
        return ""
    metric = present[0]
    scored = [(r[metric], name) for name, r in results.items() if isinstance(r.get(metric), (int, float))]
    value, name = (min if better_direction(metric) == "minimize" else max)(scored)
    return f"{name}: {metric} {value:.4g}"


class SweepSummary(Callback):
    """Prints the sweep's summary at its end; a sweep with a job that did not complete exits with status 1.

    The exit is a SystemExit raised here: Hydra turns a callback's Exception into a warning but lets SystemExit
    through, and calls on_multirun_end in reverse order, so this callback (listed first in hydra/posttrain.yaml)
    runs after any a user adds."""

    def __init__(self) -> None:
        self.launched_at = ""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.launched_at = datetime.datetime.now().isoformat(timespec="seconds")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        text, problems = summarize(Path(config.hydra.sweep.dir), self.launched_at, config.get("objective"))
        print(text, flush=True)
        if problems:
            raise SystemExit(1)
