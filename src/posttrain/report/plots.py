"""The report's plots: each final metric against each swept numeric knob, and every job's learning curves.
matplotlib is imported only when a plot is drawn."""

from __future__ import annotations

import math
import re
from pathlib import Path

from posttrain.report.reading import Job, is_seed, number
from posttrain.report.tables import short


def file_name(text: str) -> str:
    """A metric or knob name as part of a file name (eval/loss -> eval-loss)."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")


def key_names(keys: list[str]) -> dict[str, str]:
    """Each key as a legend writes it: its last part (stages.pref.learning_rate -> learning_rate) unless two
    keys share that last part."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: name if last.count(name) == 1 else key for key, name in zip(keys, last)}


def _label(job: Job, keys: list[str]) -> str:
    names = key_names(keys)
    text = ", ".join(f"{names[key]}={short(job.overrides.get(key))}" for key in keys) or job.name
    if job.state != "completed":
        text += f" ({job.state})"
    return text if len(text) <= 80 else text[:77] + "..."


# metrics that live in [0, 1]: their plots span 0 to 1, so a 0.1-point difference looks like one
BOUNDED = re.compile(r"(_rate|accuracy|accuracies|f1|distinct_\d|diversity)$")


def _mean_and_spread(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, spread


# a swept model gets a panel of its own: models' metrics differ in level, not only in trend
PANEL = "model"


def plot_metric_vs_knob(jobs: list[Job], metric: str, knob: str, others: list[str], max_lines: int, path: Path,
                        baselines: dict[str, float] | None = None):
    """metric against knob, one line per combination of the other swept keys (points when the combinations
    are too many or each has one job), one panel per model when the model is swept; a swept seed becomes each
    point's mean and standard deviation; `baselines` (model name -> the base model's value, from
    posttrain.evaluate) draws a dashed reference line in that model's panel. The y axis starts at 0 for a
    metric that cannot be negative and ends at 1 for a rate or accuracy. None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    seeds = any(is_seed(key) for key in others)
    others = [key for key in others if not is_seed(key)]
    panelled = PANEL in others and knob != PANEL
    lines = [key for key in others if not (panelled and key == PANEL)]
    drawn = [job for job in jobs if metric in job.metrics and number(job.overrides.get(knob)) is not None]
    if len({number(job.overrides.get(knob)) for job in drawn}) < 2:
        return None
    panels: dict[str, list[Job]] = {}
    for job in drawn:
        panels.setdefault(str(job.overrides.get(PANEL) if panelled else job.model), []).append(job)
    figure, grid = plt.subplots(1, len(panels), figsize=(6.4 if len(panels) == 1 else 4.6 * len(panels), 4.4),
                                sharey=True, squeeze=False)
    ys = [job.metrics[metric] for job in drawn]
    for axes, (model, members) in zip(grid[0], panels.items()):
        points = [(number(job.overrides.get(knob)), job.metrics[metric], tuple(job.overrides.get(k) for k in lines))
                  for job in members]
        title = _draw(axes, figure, points, lines, seeds, max_lines, metric, knob)
        base = (baselines or {}).get(model)
        if base is not None:
            axes.axhline(base, color="gray", linestyle="--", label=f"base model ({short(base)})")
            ys.append(base)
        if panelled:
            title = f"{PANEL}={model}"
        axes.set_title(title, fontsize=10 if not panelled else 11)
        if axes.get_legend_handles_labels()[1]:
            axes.legend(fontsize=9)
        xs = [x for x, _, _ in points]
        if min(xs) > 0 and max(xs) / min(xs) >= 10:
            axes.set_xscale("log")
        axes.set_xlabel(knob)
        axes.grid(alpha=0.3)
    if min(ys) >= 0:
        grid[0][0].set_ylim(bottom=0, top=1.02 if BOUNDED.search(metric) and max(ys) <= 1 else None)
    grid[0][0].set_ylabel(metric)
    if panelled:
        figure.suptitle(f"{metric} vs {knob}" + (" (mean and sd over seeds)" if seeds else ""), fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _draw(axes, figure, points: list[tuple], others: list[str], seeds: bool, max_lines: int, metric: str,
          knob: str) -> str:
    """One panel's lines (or points) of (x, y, other keys' values); returns its title."""
    groups: dict[tuple, dict[float, list[float]]] = {}
    for x, y, group in points:
        groups.setdefault(group, {}).setdefault(x, []).append(y)
    if len(groups) > max_lines or (len(groups) > 1 and all(len(xy) == 1 for xy in groups.values())):
        # a random search (Optuna): every job its own combination, so points, coloured by the other knob
        shade = [number(group[0]) for _, _, group in points] if len(others) == 1 else []
        if shade and None not in shade:
            dots = axes.scatter([x for x, _, _ in points], [y for _, y, _ in points], c=shade, cmap="viridis")
            figure.colorbar(dots, ax=axes, label=others[0])
        else:
            axes.scatter([x for x, _, _ in points], [y for _, y, _ in points])
        return f"{metric} vs {knob} (each point a job)"
    for group, by_x in groups.items():
        xs = sorted(by_x)
        stats = [_mean_and_spread(by_x[x]) for x in xs]
        names = key_names(others)
        label = ", ".join(f"{names[k]}={short(v)}" for k, v in zip(others, group)) or None
        if seeds:
            axes.errorbar(xs, [m for m, _ in stats], yerr=[sd for _, sd in stats], marker="o", capsize=3,
                          label=label)
        else:
            axes.plot(xs, [m for m, _ in stats], marker="o", label=label)
    return f"{metric} vs {knob}" + (" (mean and sd over seeds)" if seeds else "")


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
    legend_inches = 0.3 + 0.25 * math.ceil(len(jobs) / columns)
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
    figure.legend(handles=handles, loc="lower center", fontsize=9, ncol=columns, frameon=False)
    figure.tight_layout(rect=(0, legend_inches / figure.get_figheight(), 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
