"""Bad command lines end before any model loads: one line naming the problem and the fix, exit status 1,
and no run directory left behind."""

from __future__ import annotations

import time

import pytest
from conftest import run_posttrain

BAD_COMMAND_LINES = [
    (["model=foo"], "unknown model 'foo'. Fix: choose one of: "),
    (["method=nope"], "unknown method 'nope'. Fix: choose one of: cpo, distill, dpo, grpo, "),
    (["dataset=nope"], "unknown dataset 'nope'"),
    (["learning_rte=1e-4"], "unknown config key 'learning_rte'. Fix: did you mean learning_rate?"),
    (["training.logging_stepz=3"], "did you mean training.logging_steps?"),
    (["learning_rate=abc"], "learning_rate must be a number > 0, got 'abc'"),
    (["learning_rate=0"], "learning_rate must be a number > 0, got 0"),
    (["dpo_beta=-1"], "dpo_beta must be a number > 0, got -1"),
    (["batch_size=0"], "batch_size must be an integer > 0, got 0"),
    (["max_steps=-5"], "max_steps must be -1 (use num_epochs) or an integer > 0, got -5"),
    (["--multirun", "dpo_beta=0.1,-2"], "dpo_beta must be a number > 0, got -2"),
    (["model.path=/no/such/model"], "model path /no/such/model does not exist"),
    (["dataset.path=mine.jsonl"], "dataset=tictactoe is built in and reads no file"),
    (["hydra.run.dir=/proc/posttrain-run"], "output directory /proc/posttrain-run is not writable"),
    (["learning_rate=[1"], "cannot read override"),
    (["method=dpo", "dataset=embedding_diversity"],
     "dataset file data/embedding_diversity.parquet does not exist (dataset=embedding_diversity). "
     "Fix: build it with python -m posttrain.pairs criterion=embedding"),
    (["stages.dpo.learning_rate=-1"], "stage dpo: learning_rate must be a number > 0, got -1"),
]


@pytest.mark.parametrize("args,expected", BAD_COMMAND_LINES, ids=[" ".join(a) for a, _ in BAD_COMMAND_LINES])
def test_bad_command_line_fails_in_one_line(workdir, args, expected):
    started = time.monotonic()
    result = run_posttrain(args, workdir)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("posttrain: error: ")
    assert expected in lines[0]
    assert "Fix: " in lines[0]
    assert not (workdir / "outputs").exists() and not (workdir / "multirun").exists()
    assert elapsed < 30


def test_full_error_shows_the_traceback(workdir):
    result = run_posttrain(["model=foo"], workdir, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "PosttrainError" in result.stderr


def test_help_lists_every_group_and_method(workdir):
    result = run_posttrain(["--help"], workdir)
    assert result.returncode == 0
    for expected in ("model: ", "method: ", "dataset: ", "hardware: ", "peft: ", "experiment: ", "tictactoe"):
        assert expected in result.stdout
    methods = result.stdout.split("== Methods", 1)[1]
    from posttrain.registry import METHODS

    for name, method in METHODS.items():
        assert f"  {name} " in methods and method.summary in methods


COMMAND_LINES = [
    [], ["--multirun", "learning_rate=1e-4,1e-3"], ["-m", "--cfg", "job", "--resolve"], ["-c", "hydra"],
    ["--help"], ["-h"], ["--hydra-help"], ["--info"], ["-i", "defaults"], ["--shell-completion"],
    ["--config-name", "pairs", "x=1"], ["-cn", "report", "--config-dir", "/tmp", "dir=a"], ["-p", "model", "--cfg", "all"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=" ".join)
def test_without_hydras_private_parser_the_command_line_reads_the_same(argv, monkeypatch):
    import sys

    from posttrain.cli import hydra_args_parser

    hydras, _ = hydra_args_parser().parse_known_args(argv)
    monkeypatch.setitem(sys.modules, "hydra._internal.utils", None)  # as if a Hydra release moved it
    fallback, _ = hydra_args_parser().parse_known_args(argv)
    for flag in ("overrides", "multirun", "cfg", "resolve", "help", "hydra_help", "info", "shell_completion",
                 "config_name"):
        assert getattr(fallback, flag) == getattr(hydras, flag), flag
