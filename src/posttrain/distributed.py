"""Jobs of several training processes, one per GPU.

Three ways in: `hardware.gpus=N` (auto: every visible GPU) starts N processes on this node through torch's
elastic launcher (what torchrun runs), each running the same job on the config already composed; a job a
launcher started (torchrun, accelerate launch) has its ranks already; a Slurm job of several tasks
(hydra/launcher=slurm with tasks_per_node > 1, or nodes > 1) learns its place from submitit. Each process
gets the env:// variables that torch.distributed and the Trainer (through accelerate) read: RANK,
LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT. Every process trains; only rank 0 writes
the run directory (the others get a FollowerRunDir), and barrier() keeps the ranks in step between a write
and the reads that follow it (a pipeline's next stage starts from the final/ rank 0 wrote).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from posttrain.errors import PosttrainError
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
    quiet_followers()


def quiet_followers() -> None:
    """train.log tells rank 0's story: the other ranks write only their warnings and errors to it (their
    console output, or submitit's per-task log files, has the rest)."""
    if rank() != 0:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.WARNING)


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Training processes of this job (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def started_by_a_launcher() -> bool:
    """torchrun, accelerate launch, the elastic launch below, or a Slurm job of several tasks set the ranks."""
    return "RANK" in os.environ or submitit_tasks() > 1


def processes_to_start(hardware: DictConfig) -> int:
    """Processes `hardware.gpus` asks this job to start on the local node: 1 when a launcher already started
    the ranks or there is one GPU (or none) to use."""
    if started_by_a_launcher():
        return 1
    wanted = hardware.get("gpus", "auto")
    if wanted != "auto":
        processes = int(wanted)
    else:
        import torch

        processes = max(1, torch.cuda.device_count()) if training_device(hardware) == "cuda" else 1
    if processes > 1 and int(os.environ.get("SLURM_JOB_NUM_NODES", "1")) > 1:
        # one task per node would start independent jobs on each node, all writing one run directory
        raise PosttrainError(f"a Slurm job over {os.environ['SLURM_JOB_NUM_NODES']} nodes needs one task per GPU",
                             "set hardware.tasks_per_node to hardware.gpus_per_node (hardware=gpu does)")
    return processes


def job_processes(hardware: DictConfig) -> int:
    """Training processes of this job: the ranks a launcher started, else the ones hardware.gpus will start."""
    return world_size() if started_by_a_launcher() else processes_to_start(hardware)


def launch_local(processes: int, function: Callable, *args: Any) -> Any:
    """`function(*args)` in `processes` processes on this node (torch's elastic launcher, as torchrun; a free
    port on localhost); rank 0's return value. A process that fails ends them all with its exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=f"posttrain-{os.getpid()}",
        rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=1.0,
        start_method="spawn",
    )
    log.info("distributed: starting %d training processes on this node", processes)
    try:
        return elastic_launch(config, function)(*args)[0]
    except ChildFailedError as failed:
        # each process has printed its own error (one line for a PosttrainError); exit as the first did
        first = failed.get_first_failure()[1]
        raise SystemExit(first.exitcode if first.exitcode and first.exitcode > 0 else 1) from None
    except SignalException as stopped:
        # SIGTERM/SIGINT to this process: the launcher passed it to every rank, which checkpointed and stopped
        raise SystemExit(128 + int(stopped.sigval)) from None


def training_device(hardware: DictConfig) -> str:
    """cpu or cuda: hardware.device with auto resolved (as posttrain.hardware resolves it)."""
    import torch

    device = hardware.get("device", "auto")
    return device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")


def join_process_group(device: str) -> None:
    """In a job of several processes, join its process group now (accelerate's, which the Trainer then uses:
    gloo on `device` cpu, nccl on cuda), so that barrier() works before the first trainer is built."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=device == "cpu")


def barrier() -> None:
    """Wait for every process of the job (nothing to wait for when not distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


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

    def disk_bytes(self, without_checkpoints: bool = False) -> int:
        return 0  # a follower writes no results; walking the folder would race rank 0 removing checkpoints/

    def remove_checkpoints(self) -> int:
        return 0  # rank 0 removes them

    def prepare_resume(self) -> Path | None:
        return self.resumable_checkpoint()  # rank 0 drops what came after it


def run_dir_for_this_process(path: str | os.PathLike) -> RunDir:
    return RunDir(path) if is_main_process() else FollowerRunDir(path)
