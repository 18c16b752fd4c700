"""On a terminal a run shows progress bars with time left for training and evaluation; elsewhere (a pipe:
Slurm, CI) plain log lines only, none printed twice, and a header with the effective number of steps."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from conftest import run_posttrain

ARGS = ["method=sft", "max_steps=4", "num_epochs=3", "batch_size=8", "training.logging_steps=2",
        "training.save_steps=0", "dataset.thoughts=false", "eval.games=2", "eval.limit=16", "logger=none"]


def run_on_a_terminal(args: list[str], cwd) -> tuple[int, str]:
    """`python -m posttrain args` with its standard output and error on a pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    process = subprocess.Popen([sys.executable, "-m", "posttrain", *args], cwd=cwd, stdout=slave, stderr=slave,
                               stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return process.wait(timeout=600), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_terminal_run_shows_bars_with_time_left(tmp_path):
    code, output = run_on_a_terminal([*ARGS, "run_name=tty"], tmp_path)
    assert code == 0, output[-3000:]
    assert "tty: sft:" in output and "4/4" in output and ("step/s" in output or "s/step" in output)  # training bar
    assert "held-out positions:" in output and "16/16" in output  # the evaluation's bar
    assert "games vs random:" in output and "<" in output  # tqdm's elapsed<left
    assert "training: 4 optimizer steps (max_steps=4)" in output
    assert output.count("training: 4 optimizer steps") == 1  # log lines above the bars, once


@pytest.mark.slow
def test_a_piped_run_prints_plain_lines_once(tmp_path):
    result = run_posttrain([*ARGS, "run_name=pipe"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "\r" not in out and "step/s" not in out and "s/step" not in out
    assert "training: 4 optimizer steps (max_steps=4)" in out
    assert "evaluation: eval=tictactoe (" in out
    lines = [line for line in out.splitlines() if line.startswith("[posttrain] step ")]
    assert lines and len(lines) == len(set(lines))  # no line printed twice
