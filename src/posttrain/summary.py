"""The end of a run: its headline results in a short table (one row per stage of a pipeline, each with its
change from the stage before) and where its model and results are."""

from __future__ import annotations

from posttrain.registry import EVALUATORS
from posttrain.rundir import RunDir

# results.json figures that say what a run learned, most telling first (the sweep report leads with them too):
# each evaluator's two headline metrics, then the training losses and preference margins
# the evaluators' first two metrics: what a run is for (the report plots these)
RESULT_METRICS = tuple(dict.fromkeys(m for row in EVALUATORS.values() for m in row.metrics[:2]))
HEADLINE_METRICS = (*RESULT_METRICS, "train_loss", "eval/loss", "eval/rewards/accuracies", "eval/rewards/margins")
# columns of the table at most, besides the stage, its time and speed
SHOWN = 4


def summary_lines(run_dir: RunDir) -> list[str]:
    stages = run_dir.stages()
    rows = [(stage.stage_name, stage.read_results()) for stage in stages] or [
        (str(run_dir.read_results().get("method", "run")), run_dir.read_results())]
    metrics = [m for m in HEADLINE_METRICS if any(isinstance(r.get(m), (int, float)) for _, r in rows)][:SHOWN]
    table = [["stage", *metrics, "time", "tokens/s"]]
    previous: dict = {}
    for name, results in rows:
        cells = [name]
        for metric in metrics:
            value, before = results.get(metric), previous.get(metric)
            cell = "-" if not isinstance(value, (int, float)) else f"{value:.4g}"
            # a task's figure before and after the stage; losses of different methods do not compare
            if isinstance(value, (int, float)) and isinstance(before, (int, float)) and not metric.endswith("loss"):
                cell += f" ({value - before:+.3g})"
            cells.append(cell)
        seconds = results.get("train_seconds")
        cells.append(_duration(seconds))
        speed = results.get("tokens_per_second")
        cells.append(f"{speed:,.0f}" if isinstance(speed, (int, float)) else "-")
        table.append(cells)
        previous = results
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
    return [f"run complete: {run_dir.path}", *lines, f"model: {run_dir.final}",
            f"results: {run_dir.results} (every figure); metrics.jsonl: the curves"]


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
