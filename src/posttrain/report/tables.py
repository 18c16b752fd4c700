"""The report's table: one row per job (the keys that vary, state, error, final metrics), as Markdown and
as CSV."""

from __future__ import annotations

import csv
import io

from posttrain.report.reading import Job, number


def short(value: float | str | None) -> str:
    """A cell of the Markdown table: numbers to 4 significant digits (override text only when it is long)."""
    if value is None:
        return ""
    if isinstance(value, str):
        parsed = number(value)
        return value if parsed is None or len(value) <= 8 else short(parsed)
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def table_rows(jobs: list[Job], keys: list[str], metrics: list[str], errors: bool = True) -> tuple[list[str], list[list]]:
    """A row per job: its name, the varying keys, its state (and error), the metrics."""
    header = ["job", *keys, "state", *(["error"] if errors else []), *metrics]
    rows = [
        [job.name, *[job.overrides.get(key) for key in keys], job.state, *([job.error] if errors else []),
         *[job.metrics.get(metric) for metric in metrics]]
        for job in jobs
    ]
    return header, rows


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return short(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    return buffer.getvalue()


# --- the methods ranked: each at its best learning rate, over its seeds --------------------------------


def ranking_keys(keys: list[str]) -> tuple[str, str] | None:
    """(the key naming the compared method, the learning-rate key) among the varying keys, when the sweep
    crosses methods with learning rates (experiment=compare_preference: stages.pref.compare and
    stages.pref.learning_rate; a plain sweep: method and learning_rate); else None."""
    last = {key: key.rsplit(".", 1)[-1] for key in keys}
    method = next((key for key in keys if last[key] == "compare"), None) or next(
        (key for key in keys if last[key] == "method"), None)
    rate = next((key for key in keys if last[key] == "learning_rate"), None)
    return (method, rate) if method and rate else None


def _mean_sd(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return mean, sd


def _pm(values: list[float]) -> str:
    """mean ± sample sd; the mean alone for one value (no spread to show)."""
    mean, sd = _mean_sd(values)
    return f"{mean:.3f} ± {sd:.3f}" if len(values) > 1 else f"{mean:.3f}"


def ranking_rows(jobs: list[Job], method_key: str, rate_key: str, metric: str,
                 maximize: bool = True) -> tuple[list[str], list[list]]:
    """One row per method, best first: the learning rate whose completed jobs have the best mean metric (over
    their seeds), that mean ± sd (sample sd), the seeds it has, the mean gain over each job's starting point
    (a pipeline's first stage, when the jobs have one) and every rate's mean. Jobs without the metric are
    left out; a method none of whose jobs has it is not ranked."""
    runs: dict[str, dict[str, list[Job]]] = {}
    for job in jobs:
        if job.state == "completed" and metric in job.metrics and method_key in job.overrides:
            by_rate = runs.setdefault(job.overrides[method_key], {})
            by_rate.setdefault(job.overrides.get(rate_key, ""), []).append(job)
    sign = 1 if maximize else -1
    ranked = []
    for method, by_rate in runs.items():
        means = {rate: _mean_sd([job.metrics[metric] for job in group]) for rate, group in by_rate.items()}
        best = max(means, key=lambda rate: sign * means[rate][0])
        group = by_rate[best]
        gains = [job.metrics[metric] - job.start_metrics[metric] for job in group if metric in job.start_metrics]
        in_order = sorted(means, key=lambda rate: number(rate) or 0)
        tried = ", ".join(f"{short(rate)}: {means[rate][0]:.3f}" for rate in in_order)
        ranked.append((sign * means[best][0], method, best, [job.metrics[metric] for job in group], gains, tried))
    ranked.sort(key=lambda row: -row[0])
    header = ["rank", "method", f"best {rate_key.rsplit('.', 1)[-1]}", f"{metric} (mean ± sd)", "seeds",
              "gain over start", f"mean {metric} at each rate"]
    rows = [
        [index, method, best, _pm(values), len(values), _pm(gains) if gains else "", tried]
        for index, (_, method, best, values, gains, tried) in enumerate(ranked, start=1)
    ]
    return header, rows
