"""One training run, top to bottom: check, load data, load model, build the method's trainer, train
(resuming from the last complete checkpoint), save final/, evaluate, write results.json, mark completed."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import shutil
import signal
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import PrinterCallback, set_seed

from posttrain.adapters import resolve_adapters
from posttrain.checks import check_config, check_method_args
from posttrain.data.loading import load_data
from posttrain.distributed import is_main_process
from posttrain.errors import PosttrainError
from posttrain.evaluation import check_keep_best, resolve_evaluation
from posttrain.hardware import resolve_hardware
from posttrain.learning_rate import describe as describe_learning_rate
from posttrain.logger import quiet_libraries, tracker_setup
from posttrain.methods.common import Knobs, TrainerInputs
from posttrain.models import expert_lora
from posttrain.models.loading import (
    IDENTITY_FILE,
    load_model,
    load_tokenizer,
    model_identity,
    tokenizer_identity,
    uses_random_init,
)
from posttrain.plan import GIB, check_fits, longest_prompt, make_plan
from posttrain.redact import redact
from posttrain.progress import around_bars
from posttrain.run.callbacks import (CheckpointJournal, MetricsLog, NonFiniteGuard, ProgressBar, StopOnSignal,
                                     TaskEvaluation)
from posttrain.rundir import COMPLETED, RunDir, checkpoint_step, fsync_tree, write_atomic
from posttrain.speed import GpuSpeed

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Training stopped on SIGTERM/SIGUSR1 after saving a checkpoint; running again resumes it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def _save_final(trainer, tokenizer, run_dir: RunDir, cfg: DictConfig, base_weights, chat: bool, adapter: bool) -> None:
    """final/ is written beside under a temporary name and renamed into place once complete."""
    staging = run_dir.path / ".final.tmp"
    if staging.exists() and is_main_process():
        shutil.rmtree(staging)
    trainer.save_model(str(staging))  # every process calls it (collective under FSDP/DeepSpeed); rank 0 writes
    if not is_main_process():
        return
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; config.yaml records the settings
    tokenizer.save_pretrained(str(staging))
    identity = {
        "method": cfg.method.name,
        "adapter": adapter,
        "chat": chat,
        "base_model": model_identity(cfg.model, base_weights),
    }
    write_atomic(staging / IDENTITY_FILE, json.dumps(redact(identity), indent=2) + "\n")  # no credentials
    fsync_tree(staging)
    if run_dir.final.exists():
        shutil.rmtree(run_dir.final)
    staging.rename(run_dir.final)
    state = trainer.state
    run_dir.log_checkpoint("final", state.global_step, round(state.epoch or 0.0, 4), run_dir.final)


def _out_of_memory(cfg: DictConfig) -> PosttrainError:
    return PosttrainError(
        f"out of memory with batch_size={cfg.batch_size}",
        f"use a smaller batch_size (e.g. batch_size={max(1, cfg.batch_size // 2)}) and keep the effective batch "
        f"with training.gradient_accumulation_steps={cfg.training.gradient_accumulation_steps * 2}, "
        "or enable training.gradient_checkpointing=true",
    )


# errno values of a full disk / exhausted quota
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Less free space than this after a failed write means the disk filled up: torch.save reports a full disk
# as a RuntimeError without an errno.
NEARLY_FULL_BYTES = 64 * 2**20


def _disk_full(error: BaseException, run_dir: RunDir) -> bool:
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_FULL_ERRNOS:
            return True
        if "No space left on device" in str(seen) or "Disk quota exceeded" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    try:
        return shutil.disk_usage(run_dir.path).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _cpu_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


@contextlib.contextmanager
def _resource_errors_explained(cfg: DictConfig, run_dir: RunDir):
    """Out of memory and a full disk end the run with one line naming the cause and the fix. A save the
    full disk cut short is removed; the last complete checkpoint stays for the next attempt to resume."""
    try:
        yield
    except torch.OutOfMemoryError:
        raise _out_of_memory(cfg) from None
    except (PosttrainError, Interrupted):
        raise
    except Exception as error:
        if _cpu_out_of_memory(error):
            raise _out_of_memory(cfg) from None
        if not _disk_full(error, run_dir):
            raise
        removed = run_dir.remove_unfinished_saves() if is_main_process() else []
        last = run_dir.resumable_checkpoint()
        raise PosttrainError(
            f"disk full at {run_dir.path}: writing the run's files failed"
            f"{' (the unfinished save was removed)' if removed else ''}; "
            f"last complete checkpoint: {last.name if last else 'none'}",
            "free space on that disk and run the same command again to resume, "
            "or point hydra.run.dir at a disk with room",
        ) from None


def train_run(cfg: DictConfig, run_dir: RunDir) -> dict:
    with _resource_errors_explained(cfg, run_dir):
        return _train_run(cfg, run_dir)


def _train_run(cfg: DictConfig, run_dir: RunDir) -> dict:
    method = check_config(cfg)  # the registry row, resolved once here; each module below gets only its part
    quiet_libraries()
    check_method_args(cfg.method, method)  # TRL's config fields and types, before any data or model loads
    adapters = resolve_adapters(cfg.peft, int(cfg.lora_rank), method.head, cfg.model)
    evaluation = resolve_evaluation(method, cfg.get("eval"), cfg.dataset, int(cfg.training.eval_steps), int(cfg.seed))
    run_name = cfg.wandb_name or run_dir.name
    hardware = resolve_hardware(
        cfg.hardware,
        method=method.name,
        model_cfg=cfg.model,
        batch_size=int(cfg.batch_size),
        accumulation=int(cfg.training.gradient_accumulation_steps),
        lora=adapters.active,
        checkpointing=bool(cfg.training.gradient_checkpointing),
        method_args=cfg.method.get("args"),
    )
    log.info(hardware.summary())
    if is_main_process():
        write_atomic(run_dir.path / "hardware.json", json.dumps(hardware.record(), indent=2) + "\n")
    set_seed(int(cfg.seed))
    data = load_data(cfg.dataset, method, int(cfg.seed), tokenizer_identity(cfg.model))
    check_keep_best(cfg.training, has_eval_split=data.eval is not None)
    tokenizer = load_tokenizer(cfg.model)
    plan = None
    if hardware.device == "cuda":  # stop before any weights load when the run cannot fit the GPU
        prompt = (longest_prompt(data.train, lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]))
                  if method.samples_while_training else None)
        plan = make_plan(cfg, hardware, with_data=False, prompt_tokens=prompt)[0]
        check_fits(plan)
    model = load_model(cfg.model, tokenizer, hardware.dtype, adapters.quantization, head=method.head,
                       attention=hardware.attention, device=hardware.device)
    base_weights = None
    if adapters.active and uses_random_init(cfg.model):
        # A LoRA adapter is only meaningful with its base: keep the randomly initialised base beside it.
        base_weights = run_dir.path / "base_model"
        if not base_weights.exists() and is_main_process():
            model.save_pretrained(str(base_weights))
            tokenizer.save_pretrained(str(base_weights))

    guard = NonFiniteGuard(cfg.training.on_nonfinite_loss)
    # GPU runs log MFU and peak memory (speed.py); CPU runs do not
    gpu_speed = (GpuSpeed.for_model(model, method.name, cfg.model.max_length, adapters.active)
                 if hardware.device == "cuda" else None)
    metrics = MetricsLog(run_dir, nonfinite_steps=guard.bad_steps, gpu=gpu_speed)
    stopper = StopOnSignal()
    report_to, tracker_callbacks = tracker_setup(cfg.logger, cfg.wandb_project, run_name, run_dir, record=cfg)
    inputs = TrainerInputs(
        method=method,
        method_cfg=cfg.method,
        knobs=Knobs(
            learning_rate=float(cfg.learning_rate),
            batch_size=int(cfg.batch_size),
            num_epochs=float(cfg.num_epochs),
            max_steps=int(cfg.max_steps),
            seed=int(cfg.seed),
            max_length=int(cfg.model.max_length),
            run_name=run_name,
        ),
        training=cfg.training,
        model=model,
        tokenizer=tokenizer,
        data=data,
        peft_config=adapters.lora,
        callbacks=[metrics, CheckpointJournal(run_dir), stopper, guard, *tracker_callbacks,
                   TaskEvaluation(evaluation, tokenizer, run_dir), ProgressBar(f"{run_dir.name}: {method.name}")],
        run_dir=run_dir,
        hardware=hardware,
        report_to=report_to,
    )
    trainer = method.build(inputs)
    trainer.remove_callback(PrinterCallback)
    expert_lora.install(trainer.model)  # a mixture's expert adapters (peft builds them inside the trainer)
    resume_from = run_dir.prepare_resume()
    if resume_from:
        log.info("resuming from %s", resume_from)
    log.info("training: method=%s on %s (%s), run dir %s", method.name, hardware.device, hardware.precision, run_dir.path)
    log.info("training: %s", describe_learning_rate(cfg))
    started = time.monotonic()
    with around_bars():
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if stopper.received is not None:
        signame = signal.Signals(stopper.received).name
        raise Interrupted(f"stopped by {signame} at step {trainer.state.global_step}", stopper.received)
    if guard.bad_steps and cfg.training.on_nonfinite_loss == "stop":
        last = run_dir.resumable_checkpoint()
        raise PosttrainError(
            f"the loss became NaN/inf at step {guard.bad_steps[0]}; training stopped "
            f"(last good checkpoint: {last.name if last else 'none'})",
            "lower learning_rate or check the data; training.on_nonfinite_loss=skip drops such steps instead",
        )
    _save_final(trainer, tokenizer, run_dir, cfg, base_weights, data.conversational, adapters.active)

    results = {
        "method": method.name,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "train_seconds": round(time.monotonic() - started, 1),
        **{k: v for k, v in metrics.summary.items() if k in ("train_loss", "train_runtime")},
        **metrics.averages(),
    }
    if plan is not None:  # beside the measured peak_memory_gib
        results["planned_peak_memory_gib"] = round(plan.memory.total / GIB, 2)
    if trainer.state.best_model_checkpoint:  # training.keep_best: final/ holds this step's weights
        results["best_step"] = checkpoint_step(Path(trainer.state.best_model_checkpoint))
    if guard.bad_steps:
        results["skipped_nonfinite_steps"] = guard.bad_steps
    if data.skipped:
        results["skipped_bad_rows"] = len(data.skipped)
    with around_bars():
        results.update(evaluation.evaluate(trainer, tokenizer, run_dir))
    keep = bool(cfg.training.keep_checkpoints)
    results["disk_mib"] = round(run_dir.disk_bytes(without_checkpoints=not keep) / 2**20, 1)  # what stays
    run_dir.write_results(results)
    run_dir.set_status(COMPLETED)
    if not keep:  # after "completed": a completed run never resumes, so no half-deleted checkpoint is read
        freed = run_dir.remove_checkpoints()
        if freed:
            log.info("removed checkpoints/ (%.0f MiB) now that the run is complete; training.keep_checkpoints=true "
                     "keeps them", freed / 2**20)
    return results


def config_for_run(cfg: DictConfig) -> DictConfig:
    """The run's own config without Hydra's section (what config.yaml records)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    return OmegaConf.create(plain)
