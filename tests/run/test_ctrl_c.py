"""Ctrl-C (SIGINT) is handled like SIGTERM: a checkpoint at the next step, status `interrupted`, one line
saying how to resume, and no traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import read_jsonl

RUN = ["method=sft", "dataset=local", "dataset.path=rows.jsonl", "max_steps=400", "batch_size=8",
       "eval=none", "training.save_steps=0", "training.logging_steps=1", "logger=none", "run_name=c"]


@pytest.mark.slow  # an end-to-end training run
def test_ctrl_c_checkpoints_and_marks_the_run_interrupted(workdir):
    (workdir / "rows.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{i} + 1 =", "completion": f" {i + 1}"}) + "\n" for i in range(64)))
    run_dir = workdir / "outputs" / "c"
    process = subprocess.Popen([sys.executable, "-m", "posttrain", *RUN], cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((run_dir / "metrics.jsonl").exists() and read_jsonl(run_dir / "metrics.jsonl")):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no training step logged"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "interrupted" and "stopped by SIGINT" in status["reason"]
    assert read_jsonl(run_dir / "checkpoints.jsonl"), "no checkpoint saved on Ctrl-C"
    assert "run the same command again to resume" in stdout + stderr
