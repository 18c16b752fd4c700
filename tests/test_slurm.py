"""A real sweep through hydra/launcher=slurm on the one-node cluster that .ci/slurm-up starts.

Two jobs run as tasks of one Slurm array job. One of them gets submitit's preemption signal (USR2, what
Slurm sends before the time limit) mid-training: it must checkpoint, be requeued by submitit, resume from
that checkpoint and complete like the other. Run with: source .ci/slurm-up && pytest tests/test_slurm.py
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import read_jsonl, read_results

pytestmark = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]  # one worker submits the sweep once

MAX_STEPS = 24
PREEMPT_AT_STEP = 3  # the signal is sent once the job has logged this step
SWEEP = [
    "--multirun",
    "method=sft",
    f"max_steps={MAX_STEPS}",
    "batch_size=8",
    "training.save_steps=0",  # the only trainer checkpoint is the one the signal asks for
    "training.logging_steps=1",
    "eval.games=2",
    "learning_rate=1e-3,2e-3",
    "hardware=cpu",
    "logger=none",
    "hydra/launcher=slurm",
    # the test node has 2 CPUs: both jobs at once, one core each
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=15",
]


@functools.cache
def _cluster_problem() -> str | None:
    """Why no Slurm job can run here, or None when the cluster answers with a usable node."""
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH (no Slurm here; `source .ci/slurm-up` installs and starts a one-node cluster)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s (is slurmctld running? `source .ci/slurm-up`)"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        detail = (out.stderr.strip().splitlines() or states or ["no nodes"])[0]
        return f"the Slurm cluster is not up ({detail}); `source .ci/slurm-up` starts one"
    return None


def _job_dir(sweep_dir: Path, learning_rate: float) -> Path | None:
    for status in sweep_dir.glob("*/status.json"):
        config = status.parent / "config.yaml"
        if config.exists() and float(OmegaConf.load(config).learning_rate) == learning_rate:
            return status.parent
    return None


def _logged_steps(job_dir: Path) -> int:
    records = read_jsonl(job_dir / "metrics.jsonl") if (job_dir / "metrics.jsonl").exists() else []
    return max((r["step"] for r in records if "loss" in r), default=0)


def _slurm_job_id(job_dir: Path) -> str:
    """The Slurm id of the array task that runs this job dir (Hydra records submitit's job id)."""
    return str(OmegaConf.load(job_dir / ".hydra" / "hydra.yaml").hydra.job.id)


def _cancel_jobs(sweep_dir: Path) -> None:
    """Cancel the sweep's Slurm jobs (submitit keeps one folder per job, named by its Slurm id)."""
    ids = {folder.name.split("_")[0] for folder in (sweep_dir / ".submitit").glob("*")}
    if ids:
        subprocess.run(["scancel", *sorted(ids)], timeout=30)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)
    sweep_dir = tmp_path_factory.mktemp("slurm") / "sweep"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "posttrain", *SWEEP, f"hydra.sweep.dir={sweep_dir}"],
        cwd=sweep_dir.parent,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    preempted = None
    try:
        # Preempt the lr=1e-3 job once it is training: submitit's signal, as Slurm sends it to the job's steps.
        deadline = time.monotonic() + 300
        while preempted is None and process.poll() is None and time.monotonic() < deadline:
            job_dir = _job_dir(sweep_dir, 1e-3)
            if job_dir is not None and _logged_steps(job_dir) >= PREEMPT_AT_STEP:
                preempted = _slurm_job_id(job_dir)
                subprocess.run(["scancel", "--signal=USR2", preempted], check=True, timeout=30)
            time.sleep(0.5)
        output, _ = process.communicate(timeout=420)
    finally:
        if process.poll() is None:
            process.kill()
            _cancel_jobs(sweep_dir)
    wall = time.monotonic() - started
    print(output)
    print(f"sweep wall time {wall:.0f} s; preempted Slurm job {preempted}")
    return {"dir": sweep_dir, "returncode": process.returncode, "output": output, "preempted": preempted}


def test_every_job_of_the_sweep_completes_on_slurm(sweep):
    assert sweep["returncode"] == 0, sweep["output"][-3000:]
    assert "2 completed, 0 failed" in sweep["output"]
    for learning_rate in (1e-3, 2e-3):
        job_dir = _job_dir(sweep["dir"], learning_rate)
        assert job_dir is not None, f"no job dir for learning_rate={learning_rate}"
        assert json.loads((job_dir / "status.json").read_text())["state"] == "completed"
        results = read_results(job_dir)
        assert results["steps"] == MAX_STEPS
        assert 0.0 <= results["optimal_move_rate"] <= 1.0


def test_jobs_ran_as_slurm_array_tasks(sweep):
    logs = sorted((sweep["dir"] / ".submitit").glob("*/*_0_log.out"))
    assert len(logs) == 2, logs
    for log in logs:
        job_id = log.parent.name  # submitit's folder per job: the Slurm id <array job>_<task>
        assert re.fullmatch(r"\d+_\d+", job_id), job_id
        assert f"Starting with JobEnvironment(job_id={job_id}," in log.read_text()
    script = next((sweep["dir"] / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH --array=0-1%" in script
    assert "OMP_NUM_THREADS" in script


def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(sweep):
    job_id = sweep["preempted"]
    assert job_id, "the job finished before it could be preempted"
    job_dir = _job_dir(sweep["dir"], 1e-3)
    log = (sweep["dir"] / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    assert "Caught signal SIGUSR2" in log and f"Requeued job {job_id}" in log
    assert log.count("Starting with JobEnvironment") == 2  # the first run and the requeued one

    checkpoints = read_jsonl(job_dir / "checkpoints.jsonl")
    saved = [c for c in checkpoints if c["name"] != "final"]
    assert len(saved) == 1 and PREEMPT_AT_STEP <= saved[0]["step"] < MAX_STEPS, checkpoints
    assert checkpoints[-1]["name"] == "final" and checkpoints[-1]["step"] == MAX_STEPS
    assert f"resuming from {saved[0]['path']}" in (job_dir / "train.log").read_text()
    steps = [r["step"] for r in read_jsonl(job_dir / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(1, MAX_STEPS + 1))  # nothing lost, nothing logged twice


def test_a_job_of_two_processes_trains_as_one_distributed_run(tmp_path):
    """tasks_per_node=2: Slurm starts two processes; each gets its rank from posttrain.distributed, they
    train one model together (DDP over gloo on CPU) and only rank 0 writes the run directory."""
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)
    sweep_dir = tmp_path / "sweep"
    steps, batch_size = 4, 8
    done = subprocess.run(
        [
            sys.executable, "-m", "posttrain", "--multirun", "method=sft", f"max_steps={steps}",
            f"batch_size={batch_size}", "training.save_steps=2", "training.logging_steps=1",
            "eval=none", "hardware=cpu", "logger=none", "hydra/launcher=slurm",
            "hydra.launcher.tasks_per_node=2", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=15", f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=420,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (status,) = sweep_dir.glob("*/status.json")
    job_dir = status.parent
    assert json.loads(status.read_text())["state"] == "completed"

    (first_task_log,) = (sweep_dir / ".submitit").glob("*/*_0_log.out")  # <Slurm job id>_<task>_log.out
    job_id = first_task_log.name.removesuffix("_0_log.out")
    for rank in (0, 1):
        task_log = (first_task_log.parent / f"{job_id}_{rank}_log.out").read_text()
        assert f"distributed: rank {rank} of 2 (local rank {rank})" in task_log

    # one metrics line per step and one journal line per save: rank 1 wrote none
    metrics = read_jsonl(job_dir / "metrics.jsonl")
    assert [r["step"] for r in metrics if "loss" in r] == list(range(1, steps + 1))
    assert [c["name"] for c in read_jsonl(job_dir / "checkpoints.jsonl")] == ["checkpoint-2", "checkpoint-4", "final"]
    # both processes consumed distinct batches: the epoch advanced twice as fast as one process's would
    train_rows = int(re.search(r"(\d+) train / \d+ eval rows", (job_dir / "train.log").read_text()).group(1))
    last = [r for r in metrics if "loss" in r][-1]
    assert last["epoch"] == pytest.approx(steps * batch_size * 2 / train_rows, abs=1e-4)
