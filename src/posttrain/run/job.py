"""The Hydra task: one job of `python -m posttrain` (a single run, or one job of a sweep).

A completed run directory is not trained again. Errors end a single run with one line and exit status 1;
in a sweep they are recorded in the job's status.json and the sweep goes on with its other jobs.
"""

from __future__ import annotations

import logging
import logging.config
import os
import signal
import socket
import sys
from dataclasses import dataclass

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from posttrain.distributed import (
    barrier,
    export_distributed_env,
    is_main_process,
    join_process_group,
    launch_local,
    processes_to_start,
    quiet_followers,
    run_dir_for_this_process,
    training_device,
)
from posttrain.errors import PosttrainError, fail
from posttrain.redact import install_log_redaction, redact
from posttrain.run.pipeline import run_pipeline
from posttrain.run.train import Interrupted, config_for_run, train_run
from posttrain.rundir import RunDir, now
from posttrain.summary import summary_lines
from posttrain.sweep import failed_job_value

log = logging.getLogger(__name__)


def objective(cfg: DictConfig, results: dict) -> float | None:
    """The value a sweeper optimizes: results[cfg.objective] when that knob is set."""
    key = cfg.get("objective")
    if not key:
        return None
    if key not in results:
        raise PosttrainError(
            f"objective '{key}' is not in results.json (it has: {', '.join(sorted(results))})",
            "set objective to one of those keys",
        )
    return float(results[key])


# Knobs that name or track a run without changing what it trains.
TRACKING_KEYS = ("run_name", "wandb_project", "wandb_name", "logger", "objective")


def check_same_settings(run_dir: RunDir, cfg: DictConfig) -> None:
    """A completed run is never trained again nor its record rewritten; a launch of the same run with other
    settings says which setting differs instead of claiming the run those settings never trained."""
    recorded = OmegaConf.load(run_dir.config) if run_dir.config.exists() else None
    if recorded is None:
        return
    wanted = OmegaConf.create(redact(OmegaConf.to_container(config_for_run(cfg), resolve=True)))
    old, new = _flat(OmegaConf.to_container(recorded)), _flat(OmegaConf.to_container(wanted))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k.split(".")[0] not in TRACKING_KEYS)
    if changed:
        key = changed[0]
        raise PosttrainError(
            f"{run_dir.path} is a completed run with other settings ({key}: {old.get(key)!r} there, "
            f"{new.get(key)!r} now{f'; {len(changed) - 1} more' if len(changed) > 1 else ''})",
            "choose another run_name to train these settings, or repeat the original command",
        )


def _flat(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


@dataclass(frozen=True)
class JobContext:
    """What a job reads from Hydra, as plain values a spawned training process can receive."""

    # the run directory (hydra.runtime.output_dir)
    output_dir: str
    # one job of --multirun: errors are recorded and the sweep goes on
    in_sweep: bool
    # what a failed job returns to the sweeper
    failed_value: float | None


def run_job(cfg: DictConfig, stages: list[tuple[str, list[str], DictConfig]]) -> float | None:
    """`stages`: a pipeline's stages (posttrain.compose.stage_configs), [] for a single run. With
    hardware.gpus > 1 (auto: every visible GPU) the job runs in that many processes on this node."""
    hydra_cfg = HydraConfig.get()
    context = JobContext(hydra_cfg.runtime.output_dir, hydra_cfg.mode == RunMode.MULTIRUN,
                         failed_job_value(cfg, hydra_cfg.sweeper))
    processes = processes_to_start(cfg.hardware)
    if processes > 1:
        plain = OmegaConf.to_container(cfg, resolve=True)  # the config as composed: every process trains it
        plain_stages = [(name, overrides, OmegaConf.to_container(stage, resolve=True)) for name, overrides, stage in stages]
        logging_config = OmegaConf.to_container(hydra_cfg.job_logging, resolve=True)
        return launch_local(processes, _job_in_a_process, plain, plain_stages, context, logging_config)
    export_distributed_env()  # a Slurm job of several processes: RANK, WORLD_SIZE, ... for the Trainer
    return _run(cfg, stages, context)


def _job_in_a_process(plain: dict, plain_stages: list, context: JobContext, logging_config: dict) -> float | None:
    """One of the processes launch_local starts: Hydra's logging set up again, then the same job."""
    if hasattr(os, "setpgrp"):
        # Ctrl-C reaches the launching process only, which passes one SIGINT on to each rank: each checkpoints
        # and stops (the terminal's own SIGINT followed by the launcher's would count as a second Ctrl-C)
        os.setpgrp()
    logging.config.dictConfig(logging_config)
    quiet_followers()
    stages = [(name, overrides, OmegaConf.create(stage)) for name, overrides, stage in plain_stages]
    return _run(OmegaConf.create(plain), stages, context)


def _run(cfg: DictConfig, stages: list[tuple[str, list[str], DictConfig]], context: JobContext) -> float | None:
    run_dir = run_dir_for_this_process(context.output_dir)  # only rank 0 writes it
    install_log_redaction()
    join_process_group(training_device(cfg.hardware))
    try:
        if run_dir.is_completed():
            check_same_settings(run_dir, cfg)
            log.info("%s is already complete: nothing to do (choose another run_name to train again)", run_dir.path)
            return objective(cfg, run_dir.read_results())
        run_dir.set_status("running", started=now(), host=socket.gethostname(), pid=os.getpid())
        run_dir.write_config(config_for_run(cfg))
        if stages:
            results = run_pipeline(run_dir, stages, context.in_sweep)
        else:
            results = train_run(cfg, run_dir)
        barrier()  # rank 0 has written results.json
        if is_main_process():
            for line in summary_lines(run_dir):
                log.info(line)
        return objective(cfg, results)
    except Interrupted as stop:
        run_dir.set_status("interrupted", reason=str(stop))
        log.warning("interrupted: %s; run the same command again to resume from the last checkpoint", stop)
        _pass_signal_on(stop)
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C outside the training steps (loading, saving) or pressed twice
        run_dir.set_status("interrupted", reason="stopped by SIGINT (Ctrl-C)")
        log.warning("interrupted by Ctrl-C; run the same command again to resume from the last checkpoint")
        sys.exit(1)
    except PosttrainError as error:
        if not run_dir.is_completed():  # a finished run stays complete (e.g. only its objective key was wrong)
            run_dir.set_status("failed", error=error.line())
        if context.in_sweep:
            log.error("job failed: %s", error.line())
            return context.failed_value
        fail(error)
    except Exception as error:
        run_dir.set_status("failed", error=_first_line(error))
        if context.in_sweep:
            log.exception("job failed: %s", _first_line(error))
            return context.failed_value
        raise


def _pass_signal_on(stop: Interrupted) -> None:
    """Under a launcher that handles preemption itself (submitit requeues on SIGUSR1), hand it the signal."""
    signum = getattr(stop, "signum", None)
    if signum is None:
        return
    handler = signal.getsignal(signum)
    if callable(handler) and handler not in (signal.default_int_handler,):
        handler(signum, None)
