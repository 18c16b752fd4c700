"""Hyperparameter search with Hydra's Optuna sweeper: hydra/sweeper=optuna, or the preset optuna_tictactoe.

Each job returns results[objective] (run/job.py). A failed job returns the worst value instead (-inf when
maximizing, +inf when minimizing): the search goes on and steers away from settings that fail. (None would
make the trial a failed Optuna trial, and a search whose every trial failed would end in a traceback, "No
trials are completed yet"; NaN crashes hydra-optuna-sweeper 1.3.0 at once.) The sweep summary still lists
the failed jobs and the command exits non-zero.
Before anything launches, the command line is checked here: an Optuna sweep needs an objective, and its
direction must optimize that objective the right way round where the better side of the metric is known
(the sweeper's default direction, minimize, is wrong for a rate).
"""

from __future__ import annotations

import math
import re

from omegaconf import DictConfig, ListConfig, OmegaConf

from posttrain.errors import PosttrainError

# results.json keys whose better side is clear from the name
HIGHER_IS_BETTER = re.compile(r"(optimal_move_rate|legal_move_rate|win_rate|accuracy|accuracies|margins)$")
LOWER_IS_BETTER = re.compile(r"(loss|loss_rate|forfeit_rate|perplexity)$")


def better_direction(metric: str) -> str | None:
    """maximize / minimize for a metric whose better side is known from its name, else None."""
    if HIGHER_IS_BETTER.search(metric):
        return "maximize"
    if LOWER_IS_BETTER.search(metric):
        return "minimize"
    return None


def _name(direction) -> str:
    return str(getattr(direction, "name", direction)).lower()


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


def failed_job_value(cfg: DictConfig, sweeper: DictConfig | None) -> float | None:
    """What a failed job of a sweep returns: the worst value when a sweeper optimizes an objective, else None."""
    direction = sweeper.get("direction") if sweeper is not None else None
    if not cfg.get("objective") or direction is None or isinstance(direction, (list, ListConfig)):
        return None
    return -math.inf if _name(direction) == "maximize" else math.inf
