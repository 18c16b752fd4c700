"""The run directory: everything a run leaves behind, each file written so a crash never fakes completion.

    config.yaml        resolved config (credentials masked); .hydra/ holds Hydra's own copies (masked too)
    train.log          the run's log
    metrics.jsonl      one JSON object per logging step (and per evaluation)
    checkpoints.jsonl  one line per complete checkpoint: name, step, epoch, path; the last is "final"
    checkpoints/       resumable trainer checkpoints (checkpoint-<step>/)
    final/             the trained model and tokenizer (for LoRA: the adapter and the base model's identity)
    results.json       the final evaluation
    samples.jsonl      what the task evaluator (conf/eval/) asked the final model and how each answer scored
    eval-<name>.json   a later scoring by `posttrain.evaluate` (and eval-<name>.samples.jsonl its samples)
    status.json        state: running | interrupted | failed | completed; "completed" is written last

Whole files are replaced atomically (written beside, fsynced, renamed); journal lines are appended only
once what they describe is complete and synced to disk. The trainer writes checkpoints/checkpoint-<step>/
in place, so a checkpoint counts only once checkpoints.jsonl names it: a folder without its line is a save
that never finished, ignored and deleted when the run resumes.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
from pathlib import Path
from stat import S_ISLNK
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from posttrain.redact import redact, remember_secrets

log = logging.getLogger(__name__)

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


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder` (and the folders themselves) to disk."""
    for path in sorted(folder.rglob("*"), reverse=True) + [folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        descriptor = os.open(path, flags)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[-1])


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


def _read_yaml(path: Path, default: Any) -> Any:
    """A YAML file as plain data; `default` when it is missing or unreadable (a run still being written)."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return default
    return default if loaded is None else loaded


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


class RunDir:
    # file names inside a run directory (see the module docstring); readers use the properties below
    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    CHECKPOINT_LOG = "checkpoints.jsonl"
    RESULTS = "results.json"
    STATUS = "status.json"
    SAMPLES = "samples.jsonl"
    HYDRA = ".hydra"
    # a pipeline's stage folders: <k>-<stage name>/, each a run directory
    STAGE = re.compile(r"^(\d+)-(.+)$")

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()

    # --- paths ---
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def checkpoint_log(self) -> Path:
        return self.path / self.CHECKPOINT_LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def results(self) -> Path:
        return self.path / self.RESULTS

    @property
    def samples(self) -> Path:
        """The generations the final evaluation scored, one JSON line each."""
        return self.path / self.SAMPLES

    @property
    def status_file(self) -> Path:
        return self.path / self.STATUS

    @property
    def hydra_dir(self) -> Path:
        """Hydra's copies of the run's command line (overrides.yaml), config and hydra section (hydra.yaml)."""
        return self.path / self.HYDRA

    def is_run(self) -> bool:
        """Whether the folder is a run directory (one that has started, or that Hydra has set up)."""
        return self.status_file.exists() or self.hydra_dir.is_dir()

    def stages(self) -> list["RunDir"]:
        """A pipeline's stage folders that have started (<k>-<name>/ holding a status.json), in stage order."""
        if not self.path.is_dir():
            return []
        found = sorted(
            (int(match.group(1)), p.name)
            for p in self.path.iterdir()
            if p.is_dir() and (match := self.STAGE.match(p.name)) and (p / self.STATUS).exists()
        )
        return [RunDir(self.path / name) for _, name in found]

    @property
    def stage_name(self) -> str:
        """The stage a stage folder runs (dpo for 2-dpo/); the folder's name otherwise."""
        match = self.STAGE.match(self.name)
        return match.group(2) if match else self.name

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
        try:
            write_atomic(self.status_file, json.dumps(record, indent=2) + "\n")
        except OSError as error:
            if state == COMPLETED:
                raise
            # e.g. a full disk: the run is not marked completed either way, and the error itself matters more
            log.warning("could not write %s (%s): %s", self.status_file, state, error)

    # --- files ---
    def write_config(self, cfg: DictConfig) -> None:
        resolved = OmegaConf.to_container(cfg, resolve=True)
        remember_secrets(resolved)  # credential values from the config are masked in logs from now on
        write_atomic(self.config, OmegaConf.to_yaml(OmegaConf.create(redact(resolved))))
        self.redact_hydra_copies()

    def redact_hydra_copies(self) -> None:
        """Hydra saves the raw command line and config before the run starts, in .hydra/ (and for a sweep
        job in <sweep dir>/multirun.yaml): mask them too."""
        for path in [*self.hydra_dir.glob("*.yaml"), SweepDir(self.path.parent).multirun]:
            if not path.is_file():
                continue
            try:
                original = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as error:
                log.warning("could not check %s for credentials: %s", path, error)
                continue
            masked = redact(original)
            if masked != original:
                write_atomic(path, yaml.safe_dump(masked, sort_keys=False, allow_unicode=True))

    def write_results(self, results: dict[str, Any]) -> None:
        write_atomic(self.results, json.dumps(results, indent=2, sort_keys=True) + "\n")

    def write_samples(self, samples: list[dict[str, Any]]) -> None:
        write_atomic(self.samples, "".join(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples))

    def evaluation_file(self, evaluator: str) -> Path:
        """What `posttrain.evaluate` writes for one evaluator."""
        return self.path / f"eval-{evaluator}.json"

    def read_evaluations(self) -> dict[str, Any]:
        """The metrics of every eval-<name>.json (posttrain.evaluate's later scorings), merged by name."""
        merged: dict[str, Any] = {}
        for path in sorted(self.path.glob("eval-*.json")):
            try:
                merged.update(json.loads(path.read_text(encoding="utf-8")).get("metrics", {}))
            except (OSError, ValueError, AttributeError):
                continue
        return merged

    def read_results(self) -> dict[str, Any]:
        return json.loads(self.results.read_text(encoding="utf-8"))

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics)

    def read_config(self) -> dict[str, Any]:
        """config.yaml as plain data ({} while there is none)."""
        return _read_yaml(self.config, {})

    def read_overrides(self) -> list[str] | None:
        """The run's command-line overrides as Hydra recorded them (None when Hydra recorded none)."""
        path = self.hydra_dir / "overrides.yaml"
        return [str(line) for line in _read_yaml(path, None) or []] if path.exists() else None

    def read_hydra_config(self) -> dict[str, Any]:
        """The hydra section Hydra recorded for the run (.hydra/hydra.yaml; {} when there is none)."""
        loaded = _read_yaml(self.hydra_dir / "hydra.yaml", {})
        return (loaded.get("hydra") or {}) if isinstance(loaded, dict) else {}

    def log_metrics(self, record: dict[str, Any]) -> None:
        append_line(self.metrics, record)

    def log_checkpoint(self, name: str, step: int, epoch: float | None, path: Path) -> None:
        append_line(self.checkpoint_log, {"name": name, "step": step, "epoch": epoch, "path": str(path)})

    def checkpoint_records(self) -> list[dict[str, Any]]:
        return read_jsonl(self.checkpoint_log)

    def resumable_checkpoint(self) -> Path | None:
        """The newest trainer checkpoint that was journaled complete and is still on disk (found by name in
        checkpoints/, so a run directory that was moved or copied still resumes)."""
        for record in reversed(self.checkpoint_records()):
            path = self.checkpoints / record["name"]
            if record["name"] != "final" and path.is_dir():
                return path
        return None

    def disk_bytes(self, without_checkpoints: bool = False) -> int:
        """Bytes of the run directory's files (checkpoints/ left out when asked). A file or folder removed
        while it is counted (another process cleaning up) counts as gone."""
        total = 0
        for folder, folders, files in os.walk(self.path):  # os.walk skips a folder that vanished
            if without_checkpoints and Path(folder) == self.checkpoints:
                folders.clear()
                continue
            for name in files:
                try:
                    stat = os.lstat(os.path.join(folder, name))
                except FileNotFoundError:
                    continue
                if not S_ISLNK(stat.st_mode):
                    total += stat.st_size
        return total

    def remove_checkpoints(self) -> int:
        """Delete checkpoints/ of a completed run (final/ holds the model); returns the bytes freed. The
        journal keeps their lines: a checkpoint whose folder is gone is never resumed from."""
        if not self.checkpoints.is_dir():
            return 0
        freed = self.disk_bytes() - self.disk_bytes(without_checkpoints=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        return freed

    def remove_unfinished_saves(self) -> list[Path]:
        """Delete checkpoint folders without a journal line and a staged final/ (saves that never finished)."""
        journaled = {r["name"] for r in self.checkpoint_records()}
        unfinished = [self.path / ".final.tmp"]
        if self.checkpoints.is_dir():
            unfinished += [p for p in self.checkpoints.iterdir() if p.is_dir() and p.name not in journaled]
        removed = [p for p in unfinished if p.is_dir()]
        for folder in removed:
            log.warning("removing %s: its save never finished", folder)
            shutil.rmtree(folder, ignore_errors=True)
        return removed

    def prepare_resume(self) -> Path | None:
        """Drop what came after the checkpoint a resumed run restarts from; return that checkpoint."""
        checkpoint = self.resumable_checkpoint()
        self.remove_unfinished_saves()
        step = checkpoint_step(checkpoint) if checkpoint else 0
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


class SweepDir:
    """A sweep folder (multirun/<date>/<time>): Hydra's record of the launch, one run directory per job, and
    an Optuna search's result."""

    MULTIRUN = "multirun.yaml"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).absolute()

    @property
    def multirun(self) -> Path:
        """Hydra's record of the sweep's launch: its config and the command line's overrides."""
        return self.path / self.MULTIRUN

    @property
    def optuna_results(self) -> Path:
        """What Hydra's Optuna sweeper writes at the end of a search: best_value and best_params."""
        return self.path / "optimization_results.yaml"

    def jobs(self) -> list[RunDir]:
        """The sweep's jobs that have started (folders holding a status.json), in name order."""
        return [RunDir(p.parent) for p in sorted(self.path.glob(f"*/{RunDir.STATUS}"))]

    def task_overrides(self) -> list[str]:
        """The overrides of the launching command line (with their sweeps, e.g. learning_rate=1e-4,1e-3)."""
        loaded = _read_yaml(self.multirun, {})
        try:
            return [str(line) for line in loaded["hydra"]["overrides"]["task"] or []]
        except (KeyError, TypeError):
            return []

    def read_optuna_results(self) -> dict[str, Any]:
        loaded = _read_yaml(self.optuna_results, {})
        return loaded if isinstance(loaded, dict) else {}
