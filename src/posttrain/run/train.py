"""One training run, top to bottom: check, load data, load model, build the method's trainer, train
(resuming from the last complete checkpoint), save final/, evaluate, write results.json, mark completed."""

from __future__ import annotations

import json
import logging
import shutil
import time

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import PrinterCallback, set_seed

from posttrain import adapters
from posttrain.checks import check_config
from posttrain.data.loading import load_data
from posttrain.errors import PosttrainError
from posttrain.evaluation import evaluate_run
from posttrain.hardware import resolve_hardware
from posttrain.logger import quiet_libraries, tracker_setup
from posttrain.methods.common import TrainerInputs
from posttrain.models.loading import (
    IDENTITY_FILE,
    load_model,
    load_tokenizer,
    model_identity,
    tokenizer_identity,
    uses_random_init,
)
from posttrain.registry import get_method
from posttrain.run.callbacks import CheckpointJournal, MetricsLog, NonFiniteGuard, StopOnSignal
from posttrain.run.rundir import COMPLETED, RunDir, write_atomic

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Training stopped on SIGTERM/SIGUSR1 after saving a checkpoint; running again resumes it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def _save_final(trainer, tokenizer, run_dir: RunDir, cfg: DictConfig, base_weights, chat: bool) -> None:
    """final/ is written beside under a temporary name and renamed into place once complete."""
    staging = run_dir.path / ".final.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    trainer.save_model(str(staging))
    (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; config.yaml records the settings
    tokenizer.save_pretrained(str(staging))
    identity = {
        "method": cfg.method.name,
        "adapter": adapters.uses_lora(cfg),
        "chat": chat,
        "base_model": model_identity(cfg.model, base_weights),
    }
    write_atomic(staging / IDENTITY_FILE, json.dumps(identity, indent=2) + "\n")
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


def train_run(cfg: DictConfig, run_dir: RunDir) -> dict:
    check_config(cfg)
    quiet_libraries()
    method = get_method(cfg.method.name)
    hardware = resolve_hardware(cfg.hardware)
    set_seed(int(cfg.seed))
    data = load_data(cfg.dataset, method, int(cfg.seed), tokenizer_identity(cfg.model))

    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, tokenizer, hardware.dtype, adapters.quantization_config(cfg))
    base_weights = None
    if adapters.uses_lora(cfg) and uses_random_init(cfg.model):
        # A LoRA adapter is only meaningful with its base: keep the randomly initialised base beside it.
        base_weights = run_dir.path / "base_model"
        if not base_weights.exists():
            model.save_pretrained(str(base_weights))
            tokenizer.save_pretrained(str(base_weights))

    metrics = MetricsLog(run_dir)
    stopper = StopOnSignal()
    guard = NonFiniteGuard(cfg.training.on_nonfinite_loss)
    report_to, tracker_callbacks = tracker_setup(cfg, run_dir)
    inputs = TrainerInputs(
        cfg=cfg,
        model=model,
        tokenizer=tokenizer,
        data=data,
        peft_config=adapters.lora_config(cfg),
        callbacks=[metrics, CheckpointJournal(run_dir), stopper, guard, *tracker_callbacks],
        run_dir=run_dir,
        hardware=hardware,
        report_to=report_to,
    )
    trainer = method.build(inputs)
    trainer.remove_callback(PrinterCallback)
    resume_from = run_dir.prepare_resume()
    if resume_from:
        log.info("resuming from %s", resume_from)
    log.info("training: method=%s on %s (%s), run dir %s", method.name, hardware.device, hardware.precision, run_dir.path)
    started = time.monotonic()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.OutOfMemoryError:
        raise _out_of_memory(cfg) from None
    if stopper.received is not None:
        raise Interrupted(f"stopped by signal {stopper.received} at step {trainer.state.global_step}", stopper.received)
    if guard.bad_steps and cfg.training.on_nonfinite_loss == "stop":
        last = run_dir.resumable_checkpoint()
        raise PosttrainError(
            f"the loss became NaN/inf at step {guard.bad_steps[0]}; training stopped "
            f"(last good checkpoint: {last.name if last else 'none'})",
            "lower learning_rate or check the data; training.on_nonfinite_loss=skip drops such steps instead",
        )
    _save_final(trainer, tokenizer, run_dir, cfg, base_weights, data.conversational)

    results = {
        "method": method.name,
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0.0, 4),
        "train_seconds": round(time.monotonic() - started, 1),
        **{k: v for k, v in metrics.summary.items() if k in ("train_loss", "train_runtime")},
    }
    if guard.bad_steps:
        results["skipped_nonfinite_steps"] = guard.bad_steps
    if data.skipped:
        results["skipped_bad_rows"] = len(data.skipped)
    results.update(evaluate_run(cfg, trainer, tokenizer))
    run_dir.write_results(results)
    run_dir.set_status(COMPLETED)
    return results


def config_for_run(cfg: DictConfig) -> DictConfig:
    """The run's own config without Hydra's section (what config.yaml records)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    return OmegaConf.create(plain)
