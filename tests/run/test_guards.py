"""Runs that go wrong mid-training end in one line naming the problem and the fix, keep the last complete
checkpoint and never look complete: a NaN loss (stop, or skip when asked), out of memory, a full disk,
an unreadable dataset file. Faults are injected by tests/run/posttrain_faults.py."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_results, run_posttrain
from safetensors.torch import load_file

from posttrain.rundir import read_jsonl

HERE = Path(__file__).parent
SHORT = [
    "method=sft", "batch_size=8", "training.logging_steps=1", "eval=none", "dataset.eval_fraction=0.02",
    "dataset.thoughts=false", "logger=none",
]


def run_with_fault(fault: str, args: list[str], workdir: Path):
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p),
        "POSTTRAIN_TEST_FAULT": fault,
    }
    started = time.monotonic()
    result = run_posttrain([*SHORT, *args], workdir, module="posttrain_faults", env=env)
    print(f"\n{fault}: exit {result.returncode} after {time.monotonic() - started:.1f}s\n{result.stderr.strip()}")
    return result


def one_error_line(result) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("posttrain: error: ") and ". Fix: " in lines[0]
    return lines[0]


def assert_not_complete(run_dir: Path) -> dict:
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed"
    assert not (run_dir / "results.json").exists()
    assert not (run_dir / "final").exists() and not (run_dir / ".final.tmp").exists()
    assert "final" not in [r["name"] for r in read_jsonl(run_dir / "checkpoints.jsonl")]
    return status


def checkpoint_names(run_dir: Path) -> tuple[list[str], list[str]]:
    """(journaled checkpoints, checkpoint folders on disk)"""
    journaled = [r["name"] for r in read_jsonl(run_dir / "checkpoints.jsonl")]
    folders = sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    return journaled, folders


@pytest.mark.slow  # an end-to-end training run
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(workdir):
    # NaN at step 4, a save step: that save is dropped, checkpoint-2 stays the newest.
    result = run_with_fault("nan_loss@4", ["max_steps=8", "training.save_steps=2", "run_name=nan"], workdir)
    line = one_error_line(result)
    assert "the loss became NaN/inf at step 4; training stopped (last good checkpoint: checkpoint-2)" in line
    assert "Fix: lower learning_rate" in line and "training.on_nonfinite_loss=skip" in line
    run_dir = workdir / "outputs" / "nan"
    assert_not_complete(run_dir)
    assert checkpoint_names(run_dir) == (["checkpoint-2"], ["checkpoint-2"])
    rows = {r["step"]: r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r}
    assert rows[4]["loss"] == "nan" and rows[4]["nonfinite_steps"] == [4] and max(rows) == 4


@pytest.mark.slow  # an end-to-end training run
def test_nan_loss_is_skipped_when_asked(workdir):
    args = ["max_steps=5", "training.save_steps=0", "training.on_nonfinite_loss=skip", "run_name=skip"]
    result = run_with_fault("nan_loss@3", args, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = workdir / "outputs" / "skip"
    results = read_results(run_dir)
    assert results["skipped_nonfinite_steps"] == [3] and results["steps"] == 5
    rows = {r["step"]: r for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r}
    assert rows[3]["loss"] == "nan" and rows[3]["nonfinite_steps"] == [3]
    assert all(math.isfinite(row["loss"]) and "nonfinite_steps" not in row for step, row in rows.items() if step != 3)
    weights = load_file(run_dir / "final" / "model.safetensors")
    assert all(bool(tensor.isfinite().all()) for tensor in weights.values())  # the NaN update never landed


@pytest.mark.slow  # an end-to-end training run
def test_out_of_memory_names_the_batch_size_and_the_fix(workdir):
    result = run_with_fault("oom@2", ["max_steps=8", "training.save_steps=0", "run_name=oom"], workdir)
    line = one_error_line(result)
    assert line == (
        "posttrain: error: out of memory with batch_size=8. Fix: use a smaller batch_size (e.g. batch_size=4) "
        "and keep the effective batch with training.gradient_accumulation_steps=2, "
        "or enable training.gradient_checkpointing=true."
    )
    status = assert_not_complete(workdir / "outputs" / "oom")
    assert status["error"].startswith("out of memory with batch_size=8")


@pytest.mark.slow  # an end-to-end training run
def test_disk_full_during_a_save(workdir):
    args = ["max_steps=8", "training.save_steps=2", "run_name=full"]
    result = run_with_fault("disk_full_in_save@4", args, workdir)
    run_dir = workdir / "outputs" / "full"
    line = one_error_line(result)
    assert f"disk full at {run_dir}" in line
    assert "the unfinished save was removed); last complete checkpoint: checkpoint-2" in line
    assert "Fix: free space on that disk and run the same command again to resume, or point hydra.run.dir" in line
    assert_not_complete(run_dir)
    assert checkpoint_names(run_dir) == (["checkpoint-2"], ["checkpoint-2"])


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.mark.slow  # an end-to-end training run
def test_a_real_full_disk_during_the_first_save(workdir):
    """An 8 MB filesystem: the run starts, then its first checkpoint (~13 MB) does not fit."""
    disk = workdir / "small-disk"
    if not _mount_tmpfs(disk, "8m"):
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN (the ENOSPC test above simulates it)")
    try:
        run_dir = disk / "run"
        started = time.monotonic()
        result = run_posttrain([*SHORT, "max_steps=4", "training.save_steps=2", f"hydra.run.dir={run_dir}"], workdir)
        print(f"\nreal full disk: exit {result.returncode} after {time.monotonic() - started:.1f}s\n{result.stderr.strip()}")
        line = one_error_line(result)
        assert f"disk full at {run_dir}: writing the run's files failed (the unfinished save was removed)" in line
        assert "last complete checkpoint: none" in line
        assert_not_complete(run_dir)
        assert checkpoint_names(run_dir) == ([], [])
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_already_full_stops_before_anything_is_written(workdir):
    disk = workdir / "full-disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN")
    try:
        (disk / "filler").write_bytes(bytes(1024 * 1024 - 4096 * 4))
        result = run_posttrain([*SHORT, "max_steps=2", f"hydra.run.dir={disk}/run"], workdir)
        line = one_error_line(result)
        assert f"output directory {disk}/run is not writable" in line and "No space left on device" in line
        assert not (disk / "run").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_unreadable_dataset_file(workdir):
    data = workdir / "data.jsonl"
    data.write_text('{"prompt": "1+1=", "completion": "2"}\n')
    data.chmod(0)
    command = [sys.executable, "-m", "posttrain", "method=sft", "dataset=local", f"dataset.path={data}", "run_name=x"]
    if os.geteuid() == 0:  # root reads any file: drop the capabilities that let it
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: chmod 000 does not stop root from reading")
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    started = time.monotonic()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    print(f"\nunreadable dataset: exit {result.returncode} after {time.monotonic() - started:.1f}s\n{result.stderr.strip()}")
    line = one_error_line(result)
    assert line == f"posttrain: error: dataset file {data} is not readable. Fix: fix its permissions (chmod a+r {data})."


@pytest.mark.slow  # an end-to-end training run
def test_an_objective_missing_from_the_results_leaves_the_finished_run_complete(tmp_path):
    result = run_posttrain([*SHORT, "max_steps=2", "objective=no_such_key", "run_name=objective"], tmp_path)
    line = one_error_line(result)
    assert "objective 'no_such_key' is not in results.json" in line and "loss" in line
    run_dir = tmp_path / "outputs" / "objective"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "completed"
    assert "train_loss" in read_results(run_dir) and (run_dir / "final").is_dir()
