"""Reading a sweep's (or one run's) jobs from disk into rows: overrides, state, final metrics and learning
curves, through the run directory module; and what varies between the jobs."""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from posttrain.errors import PosttrainError
from posttrain.rundir import RunDir, SweepDir
from posttrain.summary import HEADLINE_METRICS, RESULT_METRICS

# Headline metrics first in the table; the others follow in name order.
PREFERRED_METRICS = HEADLINE_METRICS


@dataclass
class Job:
    """One run directory of the sweep, as found on disk."""

    path: Path
    name: str
    number: float  # Hydra's job number (launch order; the trial number of an Optuna sweep)
    overrides: dict[str, str]
    # keys an Optuna sweeper's params search (hydra.sweeper.params)
    swept: set[str]
    state: str
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    # metrics.jsonl rows by stage ("" for a single-method run), in stage order
    curves: dict[str, list[dict]] = field(default_factory=dict)
    # the results.json key the job returned to a sweeper (its config's objective), if any
    objective: str | None = None
    # a pipeline's first stage's final metrics (its starting point for the later stages); {} for one run
    start_metrics: dict[str, float] = field(default_factory=dict)
    # the run's model (conf/model/ name), for the base model's reference line
    model: str | None = None


# --- reading the jobs ----------------------------------------------------------------------------------


def find_job_dirs(root: Path) -> list[Path]:
    """The run directories of DIR: DIR itself when it is one run, else its job subfolders."""
    if not root.is_dir():
        raise PosttrainError(
            f"{root} is not a folder", "give a sweep folder (multirun/<date>/<time>) or a run folder (outputs/<run>)"
        )
    if RunDir(root).is_run():
        return [root]
    jobs = [p for p in sorted(root.iterdir()) if p.is_dir() and RunDir(p).is_run()]
    if jobs:
        return jobs
    sweeps = sorted(str(p.parent) for p in root.glob(f"*/{SweepDir.MULTIRUN}")) + sorted(
        str(p.parent) for p in root.glob(f"*/*/{SweepDir.MULTIRUN}")
    )
    hint = f"give one of: {', '.join(sweeps[:5])}" if sweeps else (
        "give a sweep folder (multirun/<date>/<time>) or a run folder (outputs/<run>)"
    )
    raise PosttrainError(
        f"{root} holds no runs (no {RunDir.STATUS} or {RunDir.HYDRA}/ in it or its subfolders)", hint
    )


def _flatten(node, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else str(node)}


def read_overrides(run_dir: RunDir) -> dict[str, str]:
    """The job's command-line overrides (as Hydra recorded them), else its whole config.yaml flattened."""
    lines = run_dir.read_overrides()
    if lines is not None:
        pairs = (line.split("=", 1) for line in lines if "=" in line)
        return {key.lstrip("+~"): value for key, value in pairs}
    return _flatten(run_dir.read_config())


def _job_number(hydra: dict) -> float:
    try:
        return float(hydra["job"]["num"])
    except (KeyError, TypeError, ValueError):
        return math.inf


def _process_gone(status: dict) -> bool:
    """A 'running' job whose process, on this host, no longer exists (the sweep was killed)."""
    pid = status.get("pid")
    if status.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def read_state(run_dir: RunDir) -> tuple[str, str]:
    """(state, message) from status.json: failed jobs carry their one-line error."""
    if not run_dir.status_file.exists():
        return "pending", ""
    status = run_dir.status()
    state = str(status.get("state", "unknown"))
    if state == "failed":
        return state, str(status.get("error", "unknown error"))
    if state == "interrupted":
        return state, str(status.get("reason", ""))
    if state == "running" and _process_gone(status):
        return "interrupted", f"process {status['pid']} on {status['host']} is gone"
    return state, ""


def _numbers(results: dict) -> dict[str, int | float]:
    return {
        key: value
        for key, value in results.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def read_metrics(run_dir: RunDir) -> dict[str, int | float]:
    """The numeric top-level values of results.json ({} while there is none), and those of its later
    scorings by posttrain.evaluate (eval-<name>.json), which win for the metrics they re-measure."""
    try:
        results = {**run_dir.read_results(), **run_dir.read_evaluations()}
    except (OSError, json.JSONDecodeError):
        results = run_dir.read_evaluations()
    return _numbers(results)


def read_start_metrics(run_dir: RunDir) -> dict[str, int | float]:
    """A pipeline's first stage's numeric results (its <1>-<stage>/results.json: results.json's "stages"
    mapping is written with sorted keys, not in stage order); {} for a single run or while there is none."""
    stages = run_dir.stages()
    if len(stages) < 2 or not stages[0].results.exists():
        return {}
    try:
        return _numbers(stages[0].read_results())
    except (OSError, json.JSONDecodeError):
        return {}


def read_curves(run_dir: RunDir) -> dict[str, list[dict]]:
    """metrics.jsonl rows by stage: a pipeline's stage folders (read even while the pipeline runs), else the
    run's own file."""
    stages = run_dir.stages()
    if stages:
        return {stage.stage_name: stage.read_metrics() for stage in stages}
    return {"": run_dir.read_metrics()}


def read_job(path: Path) -> Job:
    run_dir = RunDir(path)
    state, error = read_state(run_dir)
    hydra, config = run_dir.read_hydra_config(), run_dir.read_config()
    return Job(
        path=path,
        name=path.name,
        number=_job_number(hydra),
        swept=set((hydra.get("sweeper") or {}).get("params") or {}),
        overrides=read_overrides(run_dir),
        state=state,
        error=error,
        metrics=read_metrics(run_dir),
        curves=read_curves(run_dir),
        objective=config.get("objective"),
        start_metrics=read_start_metrics(run_dir),
        model=(config.get("model") or {}).get("name"),
    )


def read_baselines(folder: Path) -> dict[str, dict[str, float]]:
    """Base models' metrics by model name: what `python -m posttrain.evaluate model=<name>` wrote into
    evaluations/<name>/ (its eval-<evaluator>.json files); {} when the folder does not exist."""
    if not folder.is_dir():
        return {}
    return {sub.name: _numbers(RunDir(sub).read_evaluations()) for sub in sorted(folder.iterdir()) if sub.is_dir()}


def read_jobs(root: Path) -> list[Job]:
    jobs = [read_job(path) for path in find_job_dirs(root)]
    return sorted(jobs, key=lambda job: (job.number, job.name))


# --- what varies ---------------------------------------------------------------------------------------


def swept_keys(root: Path) -> set[str]:
    """Keys the sweep's command line sweeps (multirun.yaml), known before every job has started."""
    try:
        parsed = OverridesParser.create().parse_overrides(SweepDir(root).task_overrides())
    except HydraException:
        return set()
    return {o.key_or_group for o in parsed if o.is_sweep_override()}


def varying_keys(jobs: list[Job], swept: set[str], lone_run: bool) -> list[str]:
    """Override keys whose value differs between jobs or that the sweep sweeps (every key of a lone run),
    in first-seen order."""
    keys: list[str] = []
    for job in jobs:
        keys += [key for key in job.overrides if key not in keys]
    if lone_run:
        return keys
    swept = swept.union(*(job.swept for job in jobs))
    return [key for key in keys if key in swept or len({job.overrides.get(key) for job in jobs}) > 1]


def number(text: str | None) -> float | None:
    """The finite number an override's text spells, else None."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_seed(key: str) -> bool:
    """A seed override (seed, stages.pref.seed): repeats of one setting, never an axis of a plot."""
    return key.rsplit(".", 1)[-1] == "seed"


def numeric_knobs(jobs: list[Job], keys: list[str]) -> list[str]:
    """Swept keys whose every value is a number (learning_rate, dpo_beta, max_steps ...), seeds excepted."""
    knobs = []
    for key in keys:
        if is_seed(key):
            continue
        values = [job.overrides.get(key) for job in jobs if key in job.overrides]
        if len(set(values)) > 1 and all(number(value) is not None for value in values):
            knobs.append(key)
    return knobs


# results.json figures about the run, not about what it learned: the report sums them instead of tabling them
RUN_FIGURES = ("disk_mib",)


def metric_names(jobs: list[Job], wanted) -> list[str]:
    if wanted:
        return [str(name) for name in wanted]
    names = {name for job in jobs for name in job.metrics} - set(RUN_FIGURES)
    return [m for m in PREFERRED_METRICS if m in names] + sorted(names - set(PREFERRED_METRICS))


def headline_names(jobs: list[Job], wanted, room: int) -> list[str]:
    """The metrics report.md shows (at most `room`): the ones asked for, else the sweep's objective and the
    headline metrics the jobs have (report.csv keeps every metric)."""
    if wanted:
        return [str(name) for name in wanted]
    names = {name for job in jobs for name in job.metrics}
    chosen = [job.objective for job in jobs if job.objective in names][:1]
    chosen += [m for m in PREFERRED_METRICS if m in names and m not in chosen]
    return chosen[:max(1, room)]


def plotted_names(jobs: list[Job], headline: list[str]) -> tuple[list[str], list[str]]:
    """The table's metrics to plot against the swept knobs, and those the same in every job: the results
    that differ between jobs (the sweep's objective, an evaluator's headline metrics), or when none does,
    the other headline metrics that differ (losses, reward accuracy)."""
    varying, flat = [], []
    for name in headline:
        values = [job.metrics[name] for job in jobs if name in job.metrics]
        (varying if len(set(values)) > 1 else flat if len(values) > 1 else []).append(name)
    results = {job.objective for job in jobs} | set(RESULT_METRICS)
    return [name for name in varying if name in results] or varying, flat
