"""The run directory: everything a run leaves behind, each file written so a crash never fakes completion.

    config.yaml        resolved config (credentials masked); .hydra/ holds Hydra's own copies
    train.log          the run's log
    metrics.jsonl      one JSON object per logging step (and per evaluation)
    checkpoints.jsonl  one line per complete checkpoint: name, step, epoch, path; the last is "final"
    checkpoints/       resumable trainer checkpoints (checkpoint-<step>/)
    final/             the trained model and tokenizer (for LoRA: the adapter and the base model's identity)
    results.json       the final evaluation
    status.json        state: running | interrupted | failed | completed; "completed" is written last

Whole files are replaced atomically (written beside, fsynced, renamed); journal lines are appended only
once what they describe is complete.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from posttrain.redact import redact

COMPLETED = "completed"


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def append_line(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Lines of a JSON-lines file; a torn last line (a crash mid-write) is ignored."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()

    # --- paths ---
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoint_log(self) -> Path:
        return self.path / "checkpoints.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    # --- state ---
    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def is_completed(self) -> bool:
        return self.status().get("state") == COMPLETED and self.results.exists()

    def set_status(self, state: str, **extra: Any) -> None:
        record = {**self.status(), "state": state, "updated": now(), **extra}
        if state != "failed":
            record.pop("error", None)
        write_atomic(self.status_file, json.dumps(record, indent=2) + "\n")

    # --- files ---
    def write_config(self, cfg: DictConfig) -> None:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        write_atomic(self.config, OmegaConf.to_yaml(OmegaConf.create(redact(resolved))))

    def write_results(self, results: dict[str, Any]) -> None:
        write_atomic(self.results, json.dumps(results, indent=2, sort_keys=True) + "\n")

    def read_results(self) -> dict[str, Any]:
        return json.loads(self.results.read_text(encoding="utf-8"))

    def log_metrics(self, record: dict[str, Any]) -> None:
        append_line(self.metrics, record)

    def log_checkpoint(self, name: str, step: int, epoch: float | None, path: Path) -> None:
        append_line(self.checkpoint_log, {"name": name, "step": step, "epoch": epoch, "path": str(path)})

    def checkpoint_records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.checkpoint_log)

    def resumable_checkpoint(self) -> Path | None:
        """The newest trainer checkpoint that was journaled complete and is still on disk."""
        for record in reversed(self.checkpoint_records()):
            path = Path(record["path"])
            if record["name"] != "final" and path.is_dir():
                return path
        return None

    def prepare_resume(self) -> Path | None:
        """Drop what came after the checkpoint a resumed run restarts from; return that checkpoint."""
        checkpoint = self.resumable_checkpoint()
        journaled = {Path(r["path"]).name for r in self.checkpoint_records()}
        if self.checkpoints.is_dir():
            for folder in self.checkpoints.iterdir():
                if folder.is_dir() and folder.name not in journaled:
                    shutil.rmtree(folder)  # a save that never finished
        step = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint else 0
        kept = [r for r in read_jsonl(self.metrics) if r.get("step", 0) <= step]
        write_atomic(self.metrics, "".join(json.dumps(r) + "\n" for r in kept))
        records = [r for r in self.checkpoint_records() if r["name"] != "final" and r["step"] <= step]
        write_atomic(self.checkpoint_log, "".join(json.dumps(r) + "\n" for r in records))
        for stale in (self.results, self.final):
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
        return checkpoint
