"""hardware.gpus=N: one job in N training processes on this node (gloo on a CPU stands in for GPUs), one
clean run directory written by rank 0, a pipeline's stages run one after another on every process, and
hardware.strategy=ddp|fsdp."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import read_jsonl, read_results, run_posttrain
from hydra import compose, initialize_config_module

from posttrain.distributed import processes_to_start
from posttrain.errors import PosttrainError
from posttrain.hardware import resolve_hardware
from posttrain.plan import make_plan

ROWS = 48
SFT = ["method=sft", "dataset=local", "dataset.path=rows.jsonl", "dataset.eval_fraction=0", "hardware=cpu",
       "batch_size=4", "training.logging_steps=1", "eval=none", "logger=none"]


def rows(workdir) -> None:
    (workdir / "rows.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{i} + 1 =", "completion": f" {i + 1}"}) + "\n" for i in range(ROWS)))


def composed(*overrides: str):
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["~experiment", *overrides])


def test_gpus_counts_the_processes_to_start_unless_a_launcher_started_them(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert processes_to_start(composed("hardware=cpu").hardware) == 1  # auto on a CPU
    assert processes_to_start(composed("hardware=cpu", "hardware.gpus=3").hardware) == 3
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")  # one task per node of a two-node job: refused
    with pytest.raises(PosttrainError, match="needs one task per GPU"):
        processes_to_start(composed("hardware=cpu", "hardware.gpus=3").hardware)
    monkeypatch.delenv("SLURM_JOB_NUM_NODES")
    monkeypatch.setenv("RANK", "0")  # torchrun (or this launcher) already started the ranks
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert processes_to_start(composed("hardware=cpu", "hardware.gpus=3").hardware) == 1
    hardware = resolve_hardware(composed("hardware=cpu").hardware, batch_size=4, accumulation=2)
    assert (hardware.processes, hardware.strategy) == (2, "ddp")
    assert "effective batch 4x2x2 processes" in hardware.summary()


@pytest.mark.parametrize("override, problem", [
    ("hardware.gpus=0", "hardware.gpus must be auto (every visible GPU with hardware=gpu, else 1) or an integer > 0, got 0"),
    ("hardware.strategy=zero3", "hardware.strategy must be auto, ddp or fsdp, got 'zero3'"),
])
def test_bad_process_settings_are_one_line_errors(workdir, override, problem):
    rows(workdir)
    result = run_posttrain([*SFT, "max_steps=1", override], workdir)
    assert result.returncode == 1 and problem in result.stderr, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (workdir / "outputs").exists() or not any((workdir / "outputs").rglob("results.json"))


def test_fsdp_plans_a_shard_of_the_training_state_per_gpu(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "4")
    one, _ = make_plan(composed("model=qwen3-8b", "hardware=gpu", "lora_rank=0", "hardware.strategy=ddp"), with_data=False)
    sharded, _ = make_plan(composed("model=qwen3-8b", "hardware=gpu", "lora_rank=0", "hardware.strategy=fsdp"),
                           with_data=False)
    assert sharded.memory.weights == one.memory.weights / 4 and sharded.memory.optimizer == one.memory.optimizer / 4
    assert sharded.memory.activations == one.memory.activations


@pytest.mark.slow  # an end-to-end training run in two processes
def test_two_processes_train_one_sft_run_and_rank_0_writes_each_file_once(workdir):
    rows(workdir)
    steps = 6
    result = run_posttrain([*SFT, f"max_steps={steps}", "training.save_steps=3", "hardware.gpus=2", "run_name=ddp"],
                           workdir, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "ddp"
    assert "starting 2 training processes" in (run / "train.log").read_text()
    hardware = json.loads((run / "hardware.json").read_text())
    assert (hardware["processes"], hardware["strategy"]) == (2, "ddp")
    metrics = [m for m in read_jsonl(run / "metrics.jsonl") if "loss" in m]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1))  # one line per step: rank 1 wrote none
    # each step took batch_size rows on each of the 2 processes: 6 steps x 4 x 2 = one pass over 48 rows
    assert metrics[-1]["epoch"] == pytest.approx(steps * 4 * 2 / ROWS)
    names = [c["name"] for c in read_jsonl(run / "checkpoints.jsonl")]
    assert len(names) == len(set(names)) and names[-1] == "final"
    assert (run / "final" / "model.safetensors").exists() and read_results(run)["train_loss"] > 0
    assert json.loads((run / "status.json").read_text())["state"] == "completed"


@pytest.mark.slow  # a two-stage pipeline in two processes
def test_the_default_pipeline_runs_its_stages_in_turn_on_two_processes(workdir):
    result = run_posttrain(["hardware=cpu", "hardware.gpus=2", "max_steps=3", "eval=none", "logger=none",
                            "training.logging_steps=1", "run_name=pipeline"], workdir, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "pipeline"
    stages = sorted(p for p in run.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert [p.name for p in stages] == ["1-sft", "2-dpo"]
    for stage in stages:
        steps = [m["step"] for m in read_jsonl(stage / "metrics.jsonl") if "loss" in m]
        assert steps == [1, 2, 3], (stage, steps)
        assert json.loads((stage / "hardware.json").read_text())["processes"] == 2
    # the DPO stage started from the SFT stage's final model, which rank 0 had finished writing
    assert str(yaml.safe_load((stages[1] / "config.yaml").read_text())["model"]["path"]).endswith("1-sft/final")
    gathered = [(m["stage"], m["step"]) for m in read_jsonl(run / "metrics.jsonl") if "loss" in m]
    assert gathered == [("sft", 1), ("sft", 2), ("sft", 3), ("dpo", 1), ("dpo", 2), ("dpo", 3)]
    assert (run / "final").resolve() == (stages[1] / "final").resolve()
    assert read_results(run)["stages"].keys() == {"sft", "dpo"}


@pytest.mark.slow  # an end-to-end training run in two processes
def test_fsdp2_trains_on_two_cpu_processes(workdir):
    rows(workdir)
    result = run_posttrain([*SFT, "max_steps=3", "training.save_steps=0", "hardware.gpus=2", "hardware.strategy=fsdp",
                            "run_name=fsdp"], workdir, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "fsdp"
    assert json.loads((run / "hardware.json").read_text())["strategy"] == "fsdp"
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl") if "loss" in m] == [1, 2, 3]
    assert (run / "final" / "model.safetensors").exists()


STOP_STEPS, STOP_SAVE = 12, 4
STOP_RUN = [*SFT, f"max_steps={STOP_STEPS}", f"training.save_steps={STOP_SAVE}", "training.keep_checkpoints=true",
            "hardware.gpus=2"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def uninterrupted_losses(tmp_path_factory) -> dict[int, float]:
    """Each step's loss of the two-process run never stopped, made once for both ways of stopping it."""
    workdir = tmp_path_factory.mktemp("reference")
    rows(workdir)
    reference = run_posttrain([*STOP_RUN, "run_name=reference"], workdir, env=ONE_THREAD)
    assert reference.returncode == 0, reference.stderr[-3000:]
    return {m["step"]: m["loss"] for m in read_jsonl(workdir / "outputs" / "reference" / "metrics.jsonl") if "loss" in m}


@pytest.mark.slow  # two-process runs
@pytest.mark.xdist_group("distributed_stop")  # `pytest -n N`: one worker makes the uninterrupted run once
@pytest.mark.parametrize("stop", ["SIGTERM to the launching process", "Ctrl-C (SIGINT to the terminal's process group)"])
def test_a_stop_checkpoints_both_processes_and_the_same_command_resumes_with_identical_losses(
        workdir, stop, uninterrupted_losses):
    rows(workdir)
    steps, save, run, one_thread = STOP_STEPS, STOP_SAVE, STOP_RUN, ONE_THREAD

    run_dir = workdir / "outputs" / "resumed"
    with open(workdir / "first.log", "w") as out:
        first = subprocess.Popen([sys.executable, "-m", "posttrain", *run, "run_name=resumed"], cwd=workdir,
                                 stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **one_thread},
                                 start_new_session=True)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints.jsonl").exists() or not (run_dir / "checkpoints.jsonl").read_text().strip():
        assert first.poll() is None and time.monotonic() < deadline, (workdir / "first.log").read_text()[-3000:]
        time.sleep(0.05)
    if stop.startswith("SIGTERM"):
        first.send_signal(signal.SIGTERM)  # the launching process passes it on to both ranks
    else:
        os.killpg(first.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert first.wait(timeout=300) != 0
    stopped = read_jsonl(run_dir / "checkpoints.jsonl")[-1]["step"]
    assert save <= stopped < steps and json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"

    resumed = run_posttrain([*run, "run_name=resumed"], workdir, env=one_thread)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{stopped}'}" in resumed.stdout
    got = [(m["step"], m["loss"]) for m in read_jsonl(run_dir / "metrics.jsonl") if "loss" in m]
    want = uninterrupted_losses
    assert [step for step, _ in got] == list(range(1, steps + 1))  # every step once, across both launches
    assert max(abs(loss - want[step]) for step, loss in got) <= 1e-4, (got, want)
