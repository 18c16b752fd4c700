"""Nothing is lost when a run stops early: SIGTERM/SIGUSR1 save a checkpoint at the next step and stop,
a kill -9 in the middle of a save leaves the previous checkpoint as the one resumed from, and running the
same command again continues so that the loss at every step matches an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_results, run_posttrain

from posttrain.rundir import read_jsonl

pytestmark = pytest.mark.xdist_group("resume")  # `pytest -n N`: one worker makes the module's shared run once

HERE = Path(__file__).parent
FAULTS_ENV = {"PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)}
MAX_STEPS = 12
SAVE_STEPS = 4
RUN = [
    "method=sft", f"max_steps={MAX_STEPS}", "batch_size=8", "training.logging_steps=1",
    f"training.save_steps={SAVE_STEPS}", "eval=none", "dataset.eval_fraction=0.02",
    "dataset.thoughts=false", "logger=none",
    "training.keep_checkpoints=true",  # the tests look into checkpoints/ after the run completes
]
# CPU float32 with the same weights, optimizer state, RNG state and batches: only summation order may differ
LOSS_TOLERANCE = 1e-4


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]


def journal(run_dir: Path) -> list[str]:
    return [r["name"] for r in read_jsonl(run_dir / "checkpoints.jsonl")]


def state(run_dir: Path) -> str:
    return json.loads((run_dir / "status.json").read_text())["state"]


def assert_same_losses(run_dir: Path, reference: Path, record_property) -> float:
    """Every step logged exactly once, each loss equal to the uninterrupted run's; returns the largest gap."""
    got, want = losses(run_dir), dict(losses(reference))
    assert [step for step, _ in got] == list(range(1, MAX_STEPS + 1)), got
    print(f"\n{'step':>4} {'resumed run':>12} {'uninterrupted':>14} {'abs diff':>9}")
    gaps = []
    for step, loss in got:
        gaps.append(abs(loss - want[step]))
        print(f"{step:>4} {loss:>12.6f} {want[step]:>14.6f} {gaps[-1]:>9.2e}")
    print(f"max abs difference: {max(gaps):.3e}")
    record_property("max_abs_loss_difference", max(gaps))
    assert max(gaps) <= LOSS_TOLERANCE
    return max(gaps)


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "posttrain", *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def wait_for(process: subprocess.Popen, condition, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (status {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, never interrupted."""
    root = tmp_path_factory.mktemp("reference")
    result = run_posttrain([*RUN, "run_name=reference"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "outputs" / "reference"


@pytest.mark.slow
def test_sigterm_then_the_same_command_resumes_with_identical_losses(workdir, reference, record_property):
    args = [*RUN, "run_name=resumed"]
    run_dir = workdir / "outputs" / "resumed"
    process = start(args, workdir, workdir / "first.log")
    wait_for(process, lambda: len(journal(run_dir)) >= 1, f"checkpoint-{SAVE_STEPS}")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 1, (workdir / "first.log").read_text()[-3000:]

    # The signal's own checkpoint, saved at the step after it arrived; nothing looks complete.
    stopped = read_jsonl(run_dir / "checkpoints.jsonl")[-1]["step"]
    print(f"\nSIGTERM after checkpoint-{SAVE_STEPS}: stopped with checkpoint-{stopped}")
    assert SAVE_STEPS < stopped < MAX_STEPS, journal(run_dir)
    assert journal(run_dir) == [f"checkpoint-{SAVE_STEPS}", f"checkpoint-{stopped}"]
    assert state(run_dir) == "interrupted"
    assert f"stopped by SIGTERM at step {stopped}" in json.loads((run_dir / "status.json").read_text())["reason"]
    assert "run the same command again to resume" in (workdir / "first.log").read_text()
    assert not (run_dir / "results.json").exists() and not (run_dir / "final").exists()
    assert [step for step, _ in losses(run_dir)] == list(range(1, stopped + 1))

    result = run_posttrain(args, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{stopped}'}" in result.stdout
    assert f"step {stopped + 1}/{MAX_STEPS}" in result.stdout and f"step {stopped}/{MAX_STEPS} |" not in result.stdout
    assert_same_losses(run_dir, reference, record_property)
    assert state(run_dir) == "completed" and journal(run_dir)[-1] == "final"
    assert abs(read_results(run_dir)["eval/loss"] - read_results(reference)["eval/loss"]) <= LOSS_TOLERANCE


@pytest.mark.slow
def test_kill_9_during_a_save_resumes_from_the_previous_checkpoint(workdir, reference, record_property):
    args = [*RUN, "run_name=killed"]
    run_dir = workdir / "outputs" / "killed"
    half_saved = run_dir / "checkpoints" / f"checkpoint-{2 * SAVE_STEPS}"
    faulty = {**FAULTS_ENV, "POSTTRAIN_TEST_FAULT": f"kill_in_save@{2 * SAVE_STEPS}"}
    result = run_posttrain(args, workdir, module="posttrain_faults", env=faulty)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]

    # Killed with the weights of checkpoint-8 written and its optimizer/trainer state not: no journal line.
    assert (half_saved / "model.safetensors").exists() and not (half_saved / "trainer_state.json").exists()
    assert journal(run_dir) == [f"checkpoint-{SAVE_STEPS}"]
    assert state(run_dir) == "running" and not (run_dir / "results.json").exists()

    result = run_posttrain(args, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"removing {half_saved}: its save never finished" in result.stdout
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{SAVE_STEPS}'}" in result.stdout
    assert_same_losses(run_dir, reference, record_property)
    assert journal(run_dir) == [f"checkpoint-{s}" for s in range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS)] + ["final"]
    assert (half_saved / "trainer_state.json").exists()  # saved again, completely, by the resumed run
    assert state(run_dir) == "completed"


@pytest.mark.slow  # an end-to-end training run
def test_sigusr1_saves_at_the_next_step_and_stops(workdir):
    args = [
        "method=sft", "max_steps=500", "batch_size=4", "training.logging_steps=1", "training.save_steps=0",
        "eval=none", "dataset.thoughts=false", "logger=none", "run_name=usr1",
    ]
    run_dir = workdir / "outputs" / "usr1"
    process = start(args, workdir, workdir / "run.log")
    wait_for(process, lambda: bool(read_jsonl(run_dir / "metrics.jsonl")), "the first logged step")
    process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=300) == 1, (workdir / "run.log").read_text()[-3000:]

    records = read_jsonl(run_dir / "checkpoints.jsonl")
    assert len(records) == 1, records  # save_steps=0 saves nothing on its own
    step = records[0]["step"]
    assert 1 < step < 500
    assert (run_dir / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").exists()
    assert max(r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")) == step
    assert state(run_dir) == "interrupted"
    assert f"stopped by SIGUSR1 at step {step}" in (workdir / "run.log").read_text()
