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
