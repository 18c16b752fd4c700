"""Trainer callbacks that every method gets: the metrics log, the checkpoint journal, preemption signals
and the non-finite loss guard. They hook into transformers' Trainer, which every TRL trainer is."""

from __future__ import annotations

import logging
import math
import signal
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from posttrain.run.rundir import RunDir

log = logging.getLogger(__name__)

# The trainer's end-of-training summary carries train_loss; it is a result rather than a logging step.
SUMMARY_KEY = "train_loss"
# Per-log speed figures transformers adds (averaged since the start); tokens_per_second replaces them.
DROPPED_KEYS = ("train_runtime", "train_tokens_per_second", "num_input_tokens_seen")


def _clean(value):
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them visible as strings
    return value


class MetricsLog(TrainerCallback):
    """Writes one metrics.jsonl line per logging step (and per evaluation) and a short console line."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir
        self.summary: dict = {}
        self._last_time: float | None = None
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.monotonic()
        self._last_tokens = state.num_input_tokens_seen

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if SUMMARY_KEY in logs:
            self.summary.update({k: _clean(v) for k, v in logs.items()})
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        is_eval = any(key.startswith("eval_") for key in logs)
        for key, value in logs.items():
            if key in DROPPED_KEYS or key in ("epoch", "step"):
                continue
            name = "eval/" + key[len("eval_"):] if key.startswith("eval_") else key
            record[name] = _clean(value)
        if not is_eval:
            now = time.monotonic()
            tokens = state.num_input_tokens_seen
            if self._last_time is not None and now > self._last_time:
                record["tokens_per_second"] = round((tokens - self._last_tokens) / (now - self._last_time), 1)
            self._last_time, self._last_tokens = now, tokens
        self.run_dir.log_metrics(record)
        log.info(console_line(record, state.max_steps))


def console_line(record: dict, max_steps: int) -> str:
    parts = [f"step {record['step']}/{max_steps}"]
    for key in ("loss", "eval/loss", "rewards/accuracies", "rewards/margins", "learning_rate", "tokens_per_second"):
        if key in record and isinstance(record[key], (int, float)):
            label = {"tokens_per_second": "tok/s", "learning_rate": "lr"}.get(key, key)
            parts.append(f"{label} {record[key]:.4g}")
    return " | ".join(parts)


class CheckpointJournal(TrainerCallback):
    """Appends a checkpoints.jsonl line once the trainer has finished writing a checkpoint."""

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if path.is_dir():
            self.run_dir.log_checkpoint(path.name, state.global_step, round(state.epoch or 0.0, 4), path)


class StopOnSignal(TrainerCallback):
    """SIGTERM or SIGUSR1 (what Slurm sends before preemption or the time limit): save a checkpoint at the
    next step boundary and stop; the run is then marked interrupted and resumes when started again."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        log.warning("received %s: checkpointing at the next step, then stopping", signal.Signals(signum).name)
        self.received = signum

    def on_train_begin(self, args, state, control, **kwargs):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals to the caller
                pass

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class NonFiniteGuard(TrainerCallback):
    """Checks the gradients before each optimizer step. A NaN/inf is dropped from the update (the step's
    gradients are discarded, so the weights keep their last good values); with mode "stop" training
    then ends, leaving the last good checkpoint as the one to resume from."""

    def __init__(self, mode: str):
        self.mode = mode
        self.bad_steps: list[int] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        if torch.isfinite(norm):
            return
        for param in model.parameters():
            param.grad = None  # the optimizer skips parameters without gradients
        self.bad_steps.append(state.global_step + 1)
        log.warning("non-finite loss/gradient at step %d: update skipped", state.global_step + 1)
        if self.mode == "stop":
            control.should_training_stop = True
            control.should_save = False
