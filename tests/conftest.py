"""Shared test setup: everything offline, and a helper that runs the real command in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # `pytest -n N`: each worker (and the runs it starts) gets its share of the cores instead of all of them;
    # small CPU models train faster as N single-threaded jobs than as N jobs contending for every core
    threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)


def run_posttrain(args: list[str], cwd: Path, module: str = "posttrain", env: dict | None = None, timeout: int = 1500,
                  input_text: str | None = None):
    """`python -m <module> <args>` in `cwd`, `input_text` on its standard input; returns the CompletedProcess
    (stdout and stderr as text)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
    )


def only_run_dir(root: Path) -> Path:
    """The single run directory under root/outputs."""
    dirs = [p for p in (root / "outputs").iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def read_results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory (runs write outputs/ and multirun/ into it)."""
    return tmp_path
