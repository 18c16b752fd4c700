"""The report of a folder: read its jobs, write report.md and report.csv, draw the plots."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from posttrain.errors import PosttrainError
from posttrain.evaluation import better_direction
from posttrain.report.plots import file_name, plot_learning_curves, plot_metric_vs_knob
from posttrain.report.reading import (headline_names, metric_names, numeric_knobs, plotted_names, read_baselines,
                                      read_jobs, swept_keys, varying_keys)
from posttrain.report.tables import csv_table, markdown_table, ranking_keys, ranking_rows, short, table_rows
from posttrain.rundir import RunDir, SweepDir

PLOTS = "plots"
# report.md's table at most: job, the varying keys, state, then the objective and headline metrics
MAX_COLUMNS = 10


def _optuna_line(root: Path) -> str:
    found = SweepDir(root).read_optuna_results()
    if "best_value" not in found:
        return ""
    params = ", ".join(f"{k}={short(v)}" for k, v in (found.get("best_params") or {}).items())
    if not math.isfinite(float(found["best_value"])):
        return f"Optuna: no trial completed (best value {found['best_value']})\n\n"
    return f"Optuna best value: {short(found['best_value'])} ({params})\n\n"


@dataclass
class Report:
    markdown: Path
    csv: Path
    plots: list[Path]
    table: str
    # the methods ranked at their best learning rate ("" unless the sweep crosses methods with rates)
    ranking: str = ""


def ranking_section(jobs, keys: list[str], metric: str | None) -> str:
    """report.md's "Methods" section: each method at its best learning rate, ranked on `metric` (the
    sweep's objective, else its first headline metric) with the spread over seeds; "" when the sweep does not
    cross methods with learning rates."""
    found = ranking_keys(keys)
    if not found or not metric:
        return ""
    header, rows = ranking_rows(jobs, *found, metric, maximize=better_direction(metric) != "minimize")
    if len(rows) < 2:
        return ""
    return (f"## Methods\n\nEach {found[0]} at its best {found[1]} (the best mean {metric} over its seeds), "
            f"best first; ± is the sample sd over seeds, the gain is over each job's first stage.\n\n"
            + markdown_table(header, rows) + "\n")


def write_report(cfg: DictConfig) -> Report:
    """The report of cfg.dir (the report config, conf/report.yaml), written into cfg.out or cfg.dir."""
    import matplotlib

    matplotlib.use("Agg")
    root = Path(str(cfg.dir)).expanduser().absolute()
    jobs = read_jobs(root)
    out = Path(str(cfg.out)).expanduser().absolute() if cfg.get("out") else root
    keys = varying_keys(jobs, swept_keys(root), lone_run=RunDir(root).is_run())
    metrics = metric_names(jobs, cfg.get("metrics"))  # every one, in report.csv
    headline = headline_names(jobs, cfg.get("metrics"), MAX_COLUMNS - 2 - len(keys))
    header, rows = table_rows(jobs, keys, headline, errors=False)
    table = markdown_table(header, rows)
    failed = [f"- {job.name}: {job.error}" for job in jobs if job.error]
    try:
        (out / PLOTS).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PosttrainError(
            f"cannot write the report into {out}: {error.strerror}", "give out=<a writable folder>"
        ) from None

    for stale in [*(out / PLOTS).glob("*_vs_*.png"), out / PLOTS / "learning_curves.png"]:
        stale.unlink(missing_ok=True)  # from an earlier report of this sweep
    plots = []
    knobs = numeric_knobs(jobs, keys) if len(jobs) > 1 else []
    plotted, flat = plotted_names(jobs, headline)
    bases = read_baselines(Path(str(cfg.get("baselines") or "evaluations")).expanduser().absolute())
    for metric in plotted:
        baselines = {model: values[metric] for model, values in bases.items() if metric in values}
        for knob in knobs:
            others = [key for key in keys if key != knob]
            target = out / PLOTS / f"{file_name(metric)}_vs_{file_name(knob)}.png"
            if plot_metric_vs_knob(jobs, metric, knob, others, int(cfg.max_lines), target, baselines):
                plots.append(target)
    curves = plot_learning_curves(jobs, keys, [str(k) for k in cfg.curves], out / PLOTS / "learning_curves.png")
    if curves:
        plots.append(curves)

    states = {}
    for job in jobs:
        states[job.state] = states.get(job.state, 0) + 1
    counts = ", ".join(f"{count} {state}" for state, count in states.items())
    disk = sum(RunDir(job.path).disk_bytes() for job in jobs) / 2**20
    text = (f"# Report: {root}\n\n{len(jobs)} job{'s' if len(jobs) != 1 else ''}: {counts}; "
            f"{disk:,.0f} MiB on disk\n\n" + _optuna_line(root))
    text += table + "\n"
    ranking = ranking_section(jobs, keys, headline[0] if headline else None)
    text += ranking
    if failed:
        text += "Errors:\n\n" + "\n".join(failed) + "\n\n"
    if len(metrics) > len(headline):
        text += f"report.csv holds every metric ({len(metrics)}); this table the headline ones.\n\n"
    if flat and knobs:
        text += f"Not plotted (the same in every job): {', '.join(flat)}\n\n"
    if plots:
        text += "## Plots\n\n" + "".join(
            f"![{p.stem}]({os.path.relpath(p, out)})\n\n" for p in plots
        )
    markdown, csv_file = out / "report.md", out / "report.csv"
    markdown.write_text(text, encoding="utf-8")
    csv_file.write_text(csv_table(*table_rows(jobs, keys, metrics)), encoding="utf-8")
    return Report(markdown, csv_file, plots, table, ranking)
