"""Sweeps: the end-of-sweep summary (completed / failed / skipped jobs, each failure's one-line cause),
as a Hydra callback that runs in the launching process whatever the launcher."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from posttrain.rundir import RunDir

log = logging.getLogger(__name__)

# Jobs of the last sweep that did not complete; the entrypoint exits non-zero when there are any.
unfinished_jobs: list[str] = []


def job_dirs(sweep_dir: Path) -> list[RunDir]:
    """Job folders of a sweep: those holding a status.json (directly, not inside a stage)."""
    return [RunDir(p.parent) for p in sorted(sweep_dir.glob("*/status.json"))]


def summarize(sweep_dir: Path, launched_at: str) -> tuple[str, list[str]]:
    completed, failed, skipped, other = [], [], [], []
    for job in job_dirs(sweep_dir):
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
    return "\n".join(lines), failed + other


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.launched_at = ""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.launched_at = datetime.datetime.now().isoformat(timespec="seconds")
        unfinished_jobs.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        text, problems = summarize(Path(config.hydra.sweep.dir), self.launched_at)
        unfinished_jobs.extend(problems)
        print(text, flush=True)
