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

from posttrain.progress import bar
from posttrain.rundir import RunDir, fsync_tree
from posttrain.speed import GpuSpeed, peak_memory_gib

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
    """Writes one metrics.jsonl line per logging step (and per evaluation) and a short console line.

    A line whose window held NaN/inf steps lists them under nonfinite_steps. With training.on_nonfinite_loss=skip
    the trainer leaves them out of the logged average (it would stay in its running sum) and the loss is "nan"
    when all were; with stop (no filter: it would read every micro-batch's loss back) the line's loss is nan.
    With `gpu` (GPU runs), each training line also has peak_memory_gib and, on a GPU of speed.py's table,
    mfu_percent."""

    def __init__(self, run_dir: RunDir, nonfinite_steps: list[int] | None = None, gpu: GpuSpeed | None = None):
        self.run_dir = run_dir
        self.summary: dict = {}
        self.nonfinite_steps = nonfinite_steps if nonfinite_steps is not None else []
        self.gpu = gpu
        self._last_time: float | None = None
        self._last_tokens = 0
        self._last_step = 0
        # the windows that had a speed figure, summed, and the highest peak memory: averages()
        self._timed_tokens = 0
        self._timed_seconds = 0.0
        self._peak_memory: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time = time.monotonic()
        self._last_tokens = state.num_input_tokens_seen
        self._last_step = state.global_step
        if self.gpu is not None:
            self.gpu.start(args, kwargs.get("model"))

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_log = True  # the last step is always logged, even in a run shorter than logging_steps

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
            # trainers that count no input tokens (TRL's padded CPO and ORPO) get no speed figure rather than a
            # false 0; a window without new tokens keeps running: GRPO/RLOO count a generate call's tokens once, at
            # the first of the rollout_steps steps they train, so a figure spans the call and all those steps
            counted = tokens > self._last_tokens
            if self._last_time is not None and now > self._last_time and counted:
                rate = (tokens - self._last_tokens) / (now - self._last_time)
                record["tokens_per_second"] = round(rate, 1)
                self._timed_tokens += tokens - self._last_tokens
                self._timed_seconds += now - self._last_time
                if self.gpu is not None and (mfu := self.gpu.mfu(rate)) is not None:
                    record["mfu_percent"] = round(mfu, 2)
            if self.gpu is not None:
                record["peak_memory_gib"] = round(peak_memory_gib(), 2)
                self._peak_memory = max(self._peak_memory or 0.0, record["peak_memory_gib"])
            if counted or self._last_time is None:
                self._last_time, self._last_tokens = now, tokens
            window = range(self._last_step + 1, state.global_step + 1)
            bad = [step for step in self.nonfinite_steps if step in window]
            if bad:
                record["nonfinite_steps"] = bad
                if len(bad) == len(window) and "loss" in record:
                    record["loss"] = "nan"
            self._last_step = state.global_step
        self.run_dir.log_metrics(record)
        log.info(console_line(record, state.max_steps))

    def averages(self) -> dict:
        """The run's speed for results.json: tokens_per_second over every logged window (their tokens over their
        time), its mfu_percent, and the highest peak_memory_gib; only the figures the lines had."""
        figures: dict = {}
        if self._timed_seconds > 0:
            rate = self._timed_tokens / self._timed_seconds
            figures["tokens_per_second"] = round(rate, 1)
            if self.gpu is not None and (mfu := self.gpu.mfu(rate)) is not None:
                figures["mfu_percent"] = round(mfu, 2)
        if self._peak_memory is not None:
            figures["peak_memory_gib"] = self._peak_memory
        return figures


def console_line(record: dict, max_steps: int) -> str:
    parts = [f"step {record['step']}/{max_steps}"]
    for key in ("loss", "eval/loss", "rewards/accuracies", "rewards/margins", "learning_rate", "tokens_per_second",
                "mfu_percent", "peak_memory_gib"):
        if key in record and isinstance(record[key], (int, float)):
            label = {"tokens_per_second": "tok/s", "learning_rate": "lr", "mfu_percent": "mfu%",
                     "peak_memory_gib": "GiB"}.get(key, key)
            parts.append(f"{label} {record[key]:.4g}")
    return " | ".join(parts)


class CheckpointJournal(TrainerCallback):
    """Appends a checkpoints.jsonl line once the trainer has finished writing a checkpoint and its files
    are on disk: the line is what makes checkpoint-<step>/ count as complete (see posttrain/rundir.py)."""

    # A pickle of the TrainingArguments the trainer drops into every checkpoint; resuming never reads it
    # and config.yaml records the settings.
    PICKLED_ARGS = "training_args.bin"

    def __init__(self, run_dir: RunDir):
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not path.is_dir() or not state.is_world_process_zero:
            return
        (path / self.PICKLED_ARGS).unlink(missing_ok=True)
        fsync_tree(path)
        self.run_dir.log_checkpoint(path.name, state.global_step, round(state.epoch or 0.0, 4), path)


class StopOnSignal(TrainerCallback):
    """SIGTERM, SIGUSR1 or SIGUSR2 (what Slurm sends before preemption or the time limit; USR2 is submitit's
    preemption signal), or SIGINT (Ctrl-C): save a checkpoint at the next step boundary and stop; the run is
    then marked interrupted and resumes when started again (a second Ctrl-C stops at once). The handlers in
    place before (submitit's requeue) are put back when training ends. With several processes they agree at
    each step, so all stop at the same one."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now, without the checkpoint
        log.warning("received %s: checkpointing at the next step, then stopping", signal.Signals(signum).name)
        self.received = signum

    def on_train_begin(self, args, state, control, **kwargs):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals to the caller
                pass

    def on_step_end(self, args, state, control, **kwargs):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            signum = torch.tensor([self.received or 0], device=args.device)
            torch.distributed.all_reduce(signum, op=torch.distributed.ReduceOp.MAX)
            self.received = int(signum.item()) or None
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


class NonFiniteGuard(TrainerCallback):
    """Checks the gradients before each optimizer step. A NaN/inf is dropped from the update (the weights and
    the optimizer state keep their last good values); with mode "stop" training then ends, leaving the last
    good checkpoint as the one to resume from.

    With a fused optimizer (hardware.fused_optimizer, a GPU's default) the check never waits for the GPU: the
    optimizer's kernel reads the flag and skips the step itself (its found_inf input, as under a GradScaler),
    and the flags are read back only when the trainer logs, saves, evaluates or stops. A host sync before each
    step would leave the GPU idle while the host fetches the next batch and launches its forward. Otherwise
    the gradients of a bad step are dropped on the host."""

    def __init__(self, mode: str):
        self.mode = mode
        self.bad_steps: list[int] = []
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, 1.0 if it was skipped) not yet read back

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        if all(type(g) is torch.Tensor for g in grads):  # one fused kernel per dtype and device, fp32 norms
            norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
        else:  # sharded (FSDP2 DTensor) gradients: each norm reduces across the processes
            norms = [torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]
        norm = torch.linalg.vector_norm(torch.stack(norms))
        fused = _fused_optimizer(optimizer)
        if fused is not None:
            fused.found_inf = (~torch.isfinite(norm)).float()
            self._pending.append((state.global_step + 1, fused.found_inf))
            return
        if torch.isfinite(norm):
            return
        for param in model.parameters():
            param.grad = None  # the optimizer skips parameters without gradients
        self._found(state.global_step + 1, control)

    def on_step_end(self, args, state, control, **kwargs):
        if self._pending and (control.should_log or control.should_save or control.should_evaluate
                              or control.should_training_stop or state.global_step >= state.max_steps):
            self._read_back(control)
        if self.mode == "stop" and self.bad_steps:
            control.should_save = False  # the checkpoints before the bad step stay the newest

    def on_train_end(self, args, state, control, **kwargs):
        self._read_back(control)

    def _read_back(self, control) -> None:
        if not self._pending:
            return
        steps, flags = zip(*self._pending)
        self._pending.clear()
        for step, skipped in zip(steps, torch.stack(flags).tolist()):
            if skipped:
                self._found(step, control)

    def _found(self, step: int, control) -> None:
        self.bad_steps.append(step)
        if self.mode == "stop":
            log.error("non-finite loss/gradient at step %d: update dropped, stopping", step)
            control.should_training_stop = True
        else:
            log.warning("non-finite loss/gradient at step %d: update skipped", step)


def _fused_optimizer(optimizer) -> torch.optim.Optimizer | None:
    """The torch optimizer under accelerate's wrapper when its fused kernel takes a found_inf flag (Adam, AdamW
    and SGD with fused=True skip the whole step, step count included, when the flag is 1)."""
    while optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = getattr(optimizer, "optimizer", None)
    if optimizer is None or not optimizer.defaults.get("fused"):
        return None
    return optimizer if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)) else None


class TaskEvaluation(TrainerCallback):
    """At each training.eval_steps evaluation, the run's evaluator on a seeded subset (eval.training_limit
    items): its metrics join the trainer's eval metrics (training.keep_best can select on them) and make
    a metrics.jsonl line of eval/<metric> keys. The final evaluation, after training, is not repeated here."""

    def __init__(self, evaluation, tokenizer, run_dir: RunDir):
        self.evaluation = evaluation
        self.tokenizer = tokenizer
        self.run_dir = run_dir
        self._training = False

    def on_train_begin(self, args, state, control, **kwargs):
        self._training = True

    def on_train_end(self, args, state, control, **kwargs):
        self._training = False

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        limit = self.evaluation.training_limit
        if not (self._training and limit and model is not None):
            return
        output = self.evaluation.run_evaluator(getattr(model, "module", model), self.tokenizer, limit)
        if output is None:
            return
        order = self.evaluation.evaluator.metrics  # the headline first
        numbers = {k: v for k, v in sorted(output.metrics.items(), key=lambda kv: order.index(kv[0])
                                           if kv[0] in order else len(order)) if isinstance(v, (int, float))}
        if metrics is not None:  # read by the trainer's best-checkpoint choice once this returns
            metrics.update({f"eval_{k}": v for k, v in numbers.items()})
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                  **{f"eval/{k}": _clean(v) for k, v in numbers.items()}}
        self.run_dir.log_metrics(record)
        log.info("step %d/%d | %s | on %d items", state.global_step, state.max_steps,
                 " | ".join(f"{k} {v:.4g}" for k, v in list(numbers.items())[:2]), limit)


class ProgressBar(TrainerCallback):
    """The training bar on a terminal (posttrain.progress): optimizer steps with the last loss and tokens/s,
    and tqdm's time left."""

    def __init__(self, description: str):
        self.description = description
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        given = f"max_steps={args.max_steps}" if args.max_steps > 0 else f"{args.num_train_epochs:g} epoch(s)"
        log.info("training: %d optimizer steps (%s)%s", state.max_steps, given,
                 f", resuming at step {state.global_step}" if state.global_step else "")
        self.bar = bar(state.max_steps, self.description, "step", initial=state.global_step)
        self._since = (time.monotonic(), state.num_input_tokens_seen)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is None or not logs or "loss" not in logs:
            return
        figures = [f"loss {logs['loss']:.4g}"]
        now, tokens = time.monotonic(), state.num_input_tokens_seen
        if tokens > self._since[1] and now > self._since[0]:
            figures.append(f"{(tokens - self._since[1]) / (now - self._since[0]):,.0f} tok/s")
        self._since = (now, tokens)
        self.bar.set_postfix_str(", ".join(figures))

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
