"""`python -m posttrain_faults <overrides>`: the posttrain command with one fault injected, for tests only
(tests/run is put on PYTHONPATH; nothing in posttrain itself reads these variables).

POSTTRAIN_TEST_FAULT=<kind>@<step> picks the fault:
    kill_in_save       the save of checkpoint-<step> writes the model weights, then the process gets SIGKILL
    disk_full_in_save  the save of checkpoint-<step> writes part of the weights, then fails with ENOSPC
    nan_loss           the training loss of step <step> is NaN
    oom                step <step> raises torch.OutOfMemoryError
"""

from __future__ import annotations

import errno
import os
import runpy
import signal

import torch
from transformers import Trainer

KIND, _, STEP_TEXT = os.environ.get("POSTTRAIN_TEST_FAULT", "").partition("@")
STEP = int(STEP_TEXT or 0)

_save_checkpoint = Trainer._save_checkpoint
_training_step = Trainer.training_step


def save_checkpoint(self, model, trial):
    if self.state.global_step != STEP or KIND not in ("kill_in_save", "disk_full_in_save"):
        return _save_checkpoint(self, model, trial)
    folder = os.path.join(self.args.output_dir, f"checkpoint-{STEP}")
    if KIND == "kill_in_save":
        self.save_model(folder, _internal_call=True)  # the weights land; optimizer and trainer state never do
        os.kill(os.getpid(), signal.SIGKILL)
    os.makedirs(folder, exist_ok=True)
    weights = os.path.join(folder, "model.safetensors")
    with open(weights, "wb") as handle:
        handle.write(b"\0" * 4096)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), weights)


def training_step(self, model, inputs, *args, **kwargs):
    if self.state.global_step + 1 != STEP:
        return _training_step(self, model, inputs, *args, **kwargs)
    if KIND == "oom":
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by the test)")
    if KIND != "nan_loss":
        return _training_step(self, model, inputs, *args, **kwargs)
    compute_loss = type(self).compute_loss

    def poisoned(model, inputs, return_outputs=False, **loss_kwargs):
        result = compute_loss(self, model, inputs, return_outputs=return_outputs, **loss_kwargs)
        if return_outputs:
            return result[0] * float("nan"), result[1]
        return result * float("nan")

    self.compute_loss = poisoned
    try:
        return _training_step(self, model, inputs, *args, **kwargs)
    finally:
        del self.compute_loss


Trainer._save_checkpoint = save_checkpoint
Trainer.training_step = training_step

if __name__ == "__main__":
    runpy.run_module("posttrain", run_name="__main__", alter_sys=True)
