"""Shared test setup: everything offline, a helper that runs the real command (in a child of a warm interpreter
that has done the heavy imports once, or in a fresh one), and the longest tests scheduled first."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import warnings
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


class WarmInterpreter:
    """The worker's warm_interpreter.py process (started at its first command): it has imported torch, TRL and
    posttrain once, and forks each command from there instead of paying those imports again."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.environment: dict[str, str] = {}
        self.refused: str | None = None

    def serves(self, environment: dict[str, str]) -> bool:
        """Whether a command with this environment can run here: the one the imports ran under."""
        if self.refused or os.environ.get("POSTTRAIN_TESTS_FRESH"):
            return False
        if self.process is None:
            self.start()
        return self.refused is None and import_environment(environment) == self.environment

    def stop(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            self.process.wait(timeout=60)

    def start(self) -> None:
        self.environment = import_environment(dict(os.environ))
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("warm_interpreter.py"))],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        answer = json.loads(self.process.stdout.readline() or '{"refused": "it exited"}')
        self.refused = answer.get("refused")
        if self.refused:
            warnings.warn(f"commands run in fresh interpreters: the warm one refused ({self.refused})")

    def run(self, module: str, args: list[str], cwd: Path, environment: dict[str, str], timeout: float,
            input_text: str | None) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as streams:
            paths = {name: Path(streams) / name for name in ("stdin", "stdout", "stderr")}
            for path in paths.values():
                path.write_text(input_text or "" if path.name == "stdin" else "")
            request = {"module": module, "args": args, "cwd": str(Path(cwd).resolve()), "env": environment,
                       "timeout": timeout, **{name: str(path) for name, path in paths.items()},
                       "stdin": None if input_text is None else str(paths["stdin"])}
            self.process.stdin.write(json.dumps(request) + "\n")
            answer = json.loads(self.process.stdout.readline())
            output, errors = paths["stdout"].read_text(), paths["stderr"].read_text()
        command = [sys.executable, "-m", module, *args]
        if answer.get("timeout"):
            raise subprocess.TimeoutExpired(command, timeout, output, errors)
        return subprocess.CompletedProcess(command, answer["returncode"], output, errors)


# Variables that may differ from the warm interpreter's without changing what a command's imports did: the
# test's name, and those that libraries the suite imports in-process set with os.environ.setdefault (lm_eval:
# Xet download speed, read by huggingface_hub but inert offline; scikit-learn: Intel OpenMP flags, while torch's
# CPU build uses GNU OpenMP).
UNSEEN_AT_IMPORT = {"PYTEST_CURRENT_TEST", "HF_XET_HIGH_PERFORMANCE", "KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK"}


def import_environment(environment: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in environment.items() if key not in UNSEEN_AT_IMPORT}


WARM = WarmInterpreter()
atexit.register(WARM.stop)


def run_posttrain(args: list[str], cwd: Path, module: str = "posttrain", env: dict | None = None, timeout: int = 1500,
                  input_text: str | None = None, fresh: bool = False):
    """`python -m <module> <args>` in `cwd`, `input_text` on its standard input; returns the CompletedProcess
    (stdout and stderr as text). It runs in a child of the worker's warm interpreter when its environment is the
    one that interpreter imported under, else (or with fresh=True, or POSTTRAIN_TESTS_FRESH=1 set) in a fresh
    interpreter, exactly as a user's shell would start it."""
    environment = {**os.environ, **(env or {})}
    if not fresh and WARM.serves(environment):
        return WARM.run(module, args, cwd, environment, timeout, input_text)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_text,
    )


# The longest end-to-end runs start first, then the other slow tests, then the fast ones (pytest-xdist hands
# out tests in collection order): a long run that started last would leave the other workers idle at the end.
LONGEST = ("tests/test_default_run.py", "tests/test_grpo_showcase.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: 0 if item.nodeid.startswith(LONGEST) else 1 if item.get_closest_marker("slow") else 2)


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
