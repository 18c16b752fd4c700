"""Jobs of several training processes (one per GPU: hydra/launcher=slurm or local with tasks_per_node > 1).

Each process learns its place from submitit and gets the env:// variables that torch.distributed and the
Trainer (through accelerate) read: RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
Every process trains; only rank 0 writes the run directory (the others get a FollowerRunDir).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from posttrain.redact import remember_secrets
from posttrain.rundir import RunDir

log = logging.getLogger(__name__)


def submitit_tasks() -> int:
    """Processes of the submitit job this process belongs to (1 outside a submitit job)."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):  # set by submitit's sbatch script / local launcher
        return 1
    import submitit

    return submitit.JobEnvironment().num_tasks


def export_distributed_env() -> None:
    """In a submitit job of several tasks, export this task's torch.distributed variables."""
    if submitit_tasks() <= 1:
        return
    import submitit

    # Every task sees all of the node's GPUs and LOCAL_RANK picks one, so CUDA_VISIBLE_DEVICES is kept;
    # the variables are overwritten because sbatch passes the submitting shell's environment on.
    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    log.info(
        "distributed: rank %d of %d (local rank %d), master %s:%d",
        env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port,
    )
    if env.rank != 0:
        # train.log tells rank 0's story; every rank's full log is in submitit's per-task log files
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


class FollowerRunDir(RunDir):
    """The run directory as a process other than rank 0 sees it: read like rank 0's, never written."""

    def set_status(self, state: str, **extra: Any) -> None:
        pass

    def write_config(self, cfg) -> None:
        remember_secrets(OmegaConf.to_container(cfg, resolve=True))  # still mask them in this rank's logs

    def redact_hydra_copies(self) -> None:
        pass

    def write_results(self, results: dict[str, Any]) -> None:
        pass

    def log_metrics(self, record: dict[str, Any]) -> None:
        pass

    def log_checkpoint(self, name: str, step: int, epoch: float | None, path: Path) -> None:
        pass

    def remove_unfinished_saves(self) -> list[Path]:
        return []

    def prepare_resume(self) -> Path | None:
        return self.resumable_checkpoint()  # rank 0 drops what came after it


def run_dir_for_this_process(path: str | os.PathLike) -> RunDir:
    return RunDir(path) if is_main_process() else FollowerRunDir(path)
