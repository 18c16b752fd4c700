"""A table and plots of a sweep, like the DPO guide's "compare datasets" and "scaling analysis":

    python -m posttrain.report multirun/<date>/<time>      (or dir=..., or a single outputs/<run>)

writes into DIR (or out=...):
    report.md, report.csv   one row per job: the overrides that differ between jobs, the job's state
                            (completed / failed / running / interrupted / pending; failed rows carry the
                            one-line error) and its final metrics from results.json
    plots/<metric>_vs_<knob>.png   each final metric against each swept numeric knob, one line per
                            combination of the other swept knobs
    plots/learning_curves.png      every job's loss (and eval loss) against the step, a column per stage

It reads only what the jobs left on disk, so it works on a sweep that is still running or partly failed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig

from posttrain.errors import PosttrainError
from posttrain.rundir import RunDir, read_jsonl

# Headline metrics first in the table; the others follow in name order.
PREFERRED_METRICS = ("optimal_move_rate", "legal_move_rate", "train_loss", "eval/loss", "eval/rewards/accuracies",
                     "eval/rewards/margins")
STAGE_DIR = re.compile(r"^(\d+)-(.+)$")
PLOTS = "plots"


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


# --- reading the jobs ----------------------------------------------------------------------------------


def _is_run(path: Path) -> bool:
    return (path / "status.json").exists() or (path / ".hydra").is_dir()


def find_job_dirs(root: Path) -> list[Path]:
    """The run directories of DIR: DIR itself when it is one run, else its job subfolders."""
    if not root.is_dir():
        raise PosttrainError(
            f"{root} is not a folder", "give a sweep folder (multirun/<date>/<time>) or a run folder (outputs/<run>)"
        )
    if _is_run(root):
        return [root]
    jobs = [p for p in sorted(root.iterdir()) if p.is_dir() and _is_run(p)]
    if jobs:
        return jobs
    sweeps = sorted(str(p.parent) for p in root.glob("*/multirun.yaml")) + sorted(
        str(p.parent) for p in root.glob("*/*/multirun.yaml")
    )
    hint = f"give one of: {', '.join(sweeps[:5])}" if sweeps else (
        "give a sweep folder (multirun/<date>/<time>) or a run folder (outputs/<run>)"
    )
    raise PosttrainError(f"{root} holds no runs (no status.json or .hydra/ in it or its subfolders)", hint)


def _flatten(node, prefix: str = "") -> dict[str, str]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else str(node)}


def read_overrides(path: Path) -> dict[str, str]:
    """The job's command-line overrides (.hydra/overrides.yaml), else its whole config.yaml flattened."""
    overrides_file = path / ".hydra" / "overrides.yaml"
    if overrides_file.exists():
        lines = yaml.safe_load(overrides_file.read_text()) or []
        pairs = (str(line).split("=", 1) for line in lines if "=" in str(line))
        return {key.lstrip("+~"): value for key, value in pairs}
    if (path / "config.yaml").exists():
        return _flatten(yaml.safe_load((path / "config.yaml").read_text()) or {})
    return {}


def _hydra_config(path: Path) -> dict:
    """The job's .hydra/hydra.yaml ({} when there is none)."""
    try:
        loaded = yaml.safe_load((path / ".hydra" / "hydra.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return (loaded.get("hydra") or {}) if isinstance(loaded, dict) else {}


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


def read_metrics(run_dir: RunDir) -> dict[str, int | float]:
    """The numeric top-level values of results.json ({} while there is none)."""
    try:
        results = run_dir.read_results()
    except (OSError, json.JSONDecodeError):
        return {}
    return {
        key: value
        for key, value in results.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def read_curves(path: Path) -> dict[str, list[dict]]:
    """metrics.jsonl rows by stage: a pipeline's stage folders (<k>-<name>/, read even while the pipeline
    runs), else the run's own file."""
    stages = sorted(
        (int(match.group(1)), match.group(2), p)
        for p in path.iterdir()
        if p.is_dir() and (match := STAGE_DIR.match(p.name)) and (p / "status.json").exists()
    )
    if stages:
        return {name: read_jsonl(p / "metrics.jsonl") for _, name, p in stages}
    return {"": read_jsonl(path / "metrics.jsonl")}


def read_job(path: Path) -> Job:
    run_dir = RunDir(path)
    state, error = read_state(run_dir)
    hydra = _hydra_config(path)
    return Job(
        path=path,
        name=path.name,
        number=_job_number(hydra),
        swept=set((hydra.get("sweeper") or {}).get("params") or {}),
        overrides=read_overrides(path),
        state=state,
        error=error,
        metrics=read_metrics(run_dir),
        curves=read_curves(path),
    )


def read_jobs(root: Path) -> list[Job]:
    jobs = [read_job(path) for path in find_job_dirs(root)]
    return sorted(jobs, key=lambda job: (job.number, job.name))


# --- what varies ---------------------------------------------------------------------------------------


def swept_keys(root: Path) -> set[str]:
    """Keys the sweep's command line sweeps (multirun.yaml), known before every job has started."""
    try:
        task = (yaml.safe_load((root / "multirun.yaml").read_text()) or {})["hydra"]["overrides"]["task"]
        parsed = OverridesParser.create().parse_overrides([str(o) for o in task or []])
    except (OSError, KeyError, TypeError, yaml.YAMLError, HydraException):
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


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def numeric_knobs(jobs: list[Job], keys: list[str]) -> list[str]:
    """Swept keys whose every value is a number (learning_rate, dpo_beta, max_steps ...)."""
    knobs = []
    for key in keys:
        values = [job.overrides.get(key) for job in jobs if key in job.overrides]
        if len(set(values)) > 1 and all(_number(value) is not None for value in values):
            knobs.append(key)
    return knobs


def metric_names(jobs: list[Job], wanted) -> list[str]:
    if wanted:
        return [str(name) for name in wanted]
    names = {name for job in jobs for name in job.metrics}
    return [m for m in PREFERRED_METRICS if m in names] + sorted(names - set(PREFERRED_METRICS))


# --- the table -----------------------------------------------------------------------------------------


def _short(value: float | str | None) -> str:
    """A cell of the Markdown table: numbers to 4 significant digits (override text only when it is long)."""
    if value is None:
        return ""
    if isinstance(value, str):
        number = _number(value)
        return value if number is None or len(value) <= 8 else _short(number)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def table_rows(jobs: list[Job], keys: list[str], metrics: list[str]) -> tuple[list[str], list[list]]:
    header = ["job", *keys, "state", "error", *metrics]
    rows = [
        [job.name, *[job.overrides.get(key) for key in keys], job.state, job.error,
         *[job.metrics.get(metric) for metric in metrics]]
        for job in jobs
    ]
    return header, rows


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return _short(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return buffer.getvalue()


# --- the plots -----------------------------------------------------------------------------------------


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")


def _label(job: Job, keys: list[str]) -> str:
    text = ", ".join(f"{key}={_short(job.overrides.get(key))}" for key in keys) or job.name
    if job.state != "completed":
        text += f" ({job.state})"
    return text if len(text) <= 80 else text[:77] + "..."


def plot_metric_vs_knob(jobs: list[Job], metric: str, knob: str, others: list[str], max_lines: int, path: Path):
    """metric against knob, one line per combination of the other swept keys (points when the combinations
    are too many or each has one job); None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    points = [
        (_number(job.overrides.get(knob)), job.metrics[metric], tuple(job.overrides.get(k) for k in others))
        for job in jobs
        if metric in job.metrics and _number(job.overrides.get(knob)) is not None
    ]
    if len({x for x, _, _ in points}) < 2:
        return None
    groups: dict[tuple, list[tuple[float, float]]] = {}
    for x, y, group in points:
        groups.setdefault(group, []).append((x, y))
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    if len(groups) > max_lines or (len(groups) > 1 and all(len(xy) == 1 for xy in groups.values())):
        # a random search (Optuna): every job its own combination, so points, coloured by the other knob
        shade = [_number(group[0]) for _, _, group in points] if len(others) == 1 else []
        if shade and None not in shade:
            dots = axes.scatter([x for x, _, _ in points], [y for _, y, _ in points], c=shade, cmap="viridis")
            figure.colorbar(dots, ax=axes, label=others[0])
        else:
            axes.scatter([x for x, _, _ in points], [y for _, y, _ in points])
        axes.set_title(f"{metric} vs {knob} (each point a job; {', '.join(others)} vary)", fontsize=9)
    else:
        for group, xy in groups.items():
            xy.sort()
            label = ", ".join(f"{k}={_short(v)}" for k, v in zip(others, group)) or None
            axes.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=label)
        axes.set_title(f"{metric} vs {knob}", fontsize=10)
        if others:
            axes.legend(fontsize=7)
    xs = [x for x, _, _ in points]
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        axes.set_xscale("log")
    axes.set_xlabel(knob)
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _points(rows: list[dict], key: str) -> list[tuple[float, float]]:
    return [
        (row["step"], row[key]) for row in rows
        if isinstance(row.get(key), (int, float)) and isinstance(row.get("step"), (int, float))
    ]


def plot_learning_curves(jobs: list[Job], keys: list[str], curve_keys: list[str], path: Path):
    """Every job's curves against the step: a row per curve key, a column per stage; None when no job
    has logged any of them yet."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    stages: list[str] = []
    for job in jobs:
        stages += [stage for stage in job.curves if stage not in stages]
    present = [key for key in curve_keys if any(_points(rows, key) for job in jobs for rows in job.curves.values())]
    if not present or not stages:
        return None
    columns = 1 if len(jobs) > 6 else 2
    legend_inches = 0.3 + 0.2 * math.ceil(len(jobs) / columns)
    figure, axes = plt.subplots(
        len(present), len(stages), figsize=(5.2 * len(stages), 3.4 * len(present) + legend_inches), squeeze=False
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = []
    for index, job in enumerate(jobs):
        color = colors[index % len(colors)]
        handles.append(Line2D([], [], color=color, marker=".", label=_label(job, keys)))
        for row_index, key in enumerate(present):
            for column, stage in enumerate(stages):
                xy = _points(job.curves.get(stage, []), key)
                if xy:
                    axes[row_index][column].plot(
                        [x for x, _ in xy], [y for _, y in xy], marker="." if len(xy) > 1 else "o", color=color
                    )
    for row_index, key in enumerate(present):
        for column, stage in enumerate(stages):
            axes[row_index][column].set_title(f"{stage}: {key}" if stage else key, fontsize=10)
            axes[row_index][column].set_xlabel("step")
            axes[row_index][column].grid(alpha=0.3)
    figure.legend(handles=handles, loc="lower center", fontsize=7, ncol=columns, frameon=False)
    figure.tight_layout(rect=(0, legend_inches / figure.get_figheight(), 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# --- the report ----------------------------------------------------------------------------------------


def _optuna_line(root: Path) -> str:
    results = root / "optimization_results.yaml"
    if not results.exists():
        return ""
    found = yaml.safe_load(results.read_text()) or {}
    if "best_value" not in found:
        return ""
    params = ", ".join(f"{k}={_short(v)}" for k, v in (found.get("best_params") or {}).items())
    if not math.isfinite(float(found["best_value"])):
        return f"Optuna: no trial completed (best value {found['best_value']})\n\n"
    return f"Optuna best value: {_short(found['best_value'])} ({params})\n\n"


@dataclass
class Report:
    markdown: Path
    csv: Path
    plots: list[Path]
    table: str


def write_report(cfg: DictConfig) -> Report:
    import matplotlib

    matplotlib.use("Agg")
    root = Path(str(cfg.dir)).expanduser().absolute()
    jobs = read_jobs(root)
    out = Path(str(cfg.out)).expanduser().absolute() if cfg.get("out") else root
    keys = varying_keys(jobs, swept_keys(root), lone_run=_is_run(root))
    metrics = metric_names(jobs, cfg.get("metrics"))
    header, rows = table_rows(jobs, keys, metrics)
    table = markdown_table(header, rows)
    try:
        (out / PLOTS).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PosttrainError(
            f"cannot write the report into {out}: {error.strerror}", "give out=<a writable folder>"
        ) from None

    for stale in [*(out / PLOTS).glob("*_vs_*.png"), out / PLOTS / "learning_curves.png"]:
        stale.unlink(missing_ok=True)  # from an earlier report of this sweep
    plots, flat = [], []
    knobs = numeric_knobs(jobs, keys) if len(jobs) > 1 else []
    for metric in metrics:
        values = [job.metrics[metric] for job in jobs if metric in job.metrics]
        if len(set(values)) < 2:
            flat += [metric] if len(values) > 1 else []
            continue
        for knob in knobs:
            others = [key for key in keys if key != knob]
            target = out / PLOTS / f"{_file_name(metric)}_vs_{_file_name(knob)}.png"
            if plot_metric_vs_knob(jobs, metric, knob, others, int(cfg.max_lines), target):
                plots.append(target)
    curves = plot_learning_curves(jobs, keys, [str(k) for k in cfg.curves], out / PLOTS / "learning_curves.png")
    if curves:
        plots.append(curves)

    states = {}
    for job in jobs:
        states[job.state] = states.get(job.state, 0) + 1
    counts = ", ".join(f"{count} {state}" for state, count in states.items())
    text = f"# Report: {root}\n\n{len(jobs)} job{'s' if len(jobs) != 1 else ''}: {counts}\n\n" + _optuna_line(root)
    text += table + "\n"
    if flat and knobs:
        text += f"Not plotted (the same in every job): {', '.join(flat)}\n\n"
    if plots:
        text += "## Plots\n\n" + "".join(
            f"![{p.stem}]({os.path.relpath(p, out)})\n\n" for p in plots
        )
    markdown, csv_file = out / "report.md", out / "report.csv"
    markdown.write_text(text, encoding="utf-8")
    csv_file.write_text(csv_table(header, rows), encoding="utf-8")
    return Report(markdown, csv_file, plots, table)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def command_line(args: list[str]) -> list[str]:
    """Overrides for the report config: a bare DIR (`python -m posttrain.report DIR`) becomes dir=DIR, and
    folder values are quoted (job folders have = and , in their names)."""
    overrides, folders = [], []
    for arg in args:
        key, _, value = arg.partition("=")
        if "=" not in arg or Path(arg).exists():
            folders.append(arg)
        elif key in ("dir", "out") and value and value[0] not in "'\"":
            overrides.append(f"{key}={_quoted(value)}")
        else:
            overrides.append(arg)
    if len(folders) > 1:
        raise PosttrainError(f"one folder at a time, got {len(folders)}: {' '.join(folders)}", "give a single DIR")
    return overrides + [f"dir={_quoted(folder)}" for folder in folders]


def main() -> None:
    from posttrain.compose import run_tool
    from posttrain.errors import fail

    def body(cfg: DictConfig) -> None:
        report = write_report(cfg)
        print(report.table, end="")
        print(f"report: {report.markdown}\n        {report.csv}")
        for plot in report.plots:
            print(f"plot:   {plot}")

    try:
        sys.argv[1:] = command_line(sys.argv[1:])
    except PosttrainError as error:
        fail(error)
    run_tool("report", body)


if __name__ == "__main__":
    main()
