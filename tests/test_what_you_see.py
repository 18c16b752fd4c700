"""What you see is what runs: `--cfg job` prints the config that trains (each stage's for a pipeline), the
run records exactly that config, method=/dataset= on the command line get their own defaults rather than
the default preset's stage settings, and a launch that trains nothing rewrites nothing."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from conftest import run_posttrain

# shrinks a run to seconds: two steps, no tic-tac-toe games at the end
SHORT = ["max_steps=2", "batch_size=8", "eval=none", "training.save_steps=0"]


def printed_configs(args: list[str], cwd) -> list[dict]:
    """The YAML documents `python -m posttrain <args> --cfg job --resolve` prints."""
    result = run_posttrain([*args, "--cfg", "job", "--resolve"], cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def recorded(run_dir) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_method_on_the_command_line_gets_its_own_defaults(workdir):
    (dpo,) = printed_configs(["method=dpo"], workdir)
    assert dpo["method"]["args"]["loss_type"] == "sigmoid"  # DPO's own default, not the preset's sppo_hard
    assert not dpo["stages"]
    (sft,) = printed_configs(["method=sft", "dataset=local", "dataset.path=my.csv"], workdir)
    assert sft["num_epochs"] == 1 and not sft["stages"]  # not the tic-tac-toe SFT stage's 3 epochs


def test_dataset_alone_leaves_the_default_pipeline(workdir):
    (cfg,) = printed_configs(["dataset=nli"], workdir)
    assert cfg["method"]["name"] == "sft" and cfg["dataset"]["name"] == "nli" and not cfg["stages"]


def test_a_named_preset_gives_its_stage_settings_to_one_method(workdir):
    (dpo,) = printed_configs(["experiment=tictactoe", "method=dpo", "num_epochs=2"], workdir)
    assert dpo["method"]["args"]["loss_type"] == "sppo_hard" and dpo["learning_rate"] == 5e-4
    assert dpo["num_epochs"] == 2  # the command line still wins over the stage
    (kto,) = printed_configs(["experiment=tictactoe", "method=kto"], workdir)
    assert kto["method"]["name"] == "kto" and not kto["stages"]


def test_experiment_null_drops_the_preset(workdir):
    (cfg,) = printed_configs(["experiment=null"], workdir)
    assert cfg["method"]["name"] == "sft" and not cfg["stages"]


def test_the_default_pipeline_prints_each_stage(workdir):
    pipeline, sft, dpo = printed_configs(["run_name=p"], workdir)
    assert list(pipeline["stages"]) == ["sft", "dpo"]
    assert (sft["method"]["name"], sft["learning_rate"], sft["num_epochs"]) == ("sft", 2e-3, 3)
    assert (dpo["method"]["name"], dpo["method"]["args"]["loss_type"]) == ("dpo", "sppo_hard")
    assert dpo["model"]["path"] == str(workdir / "outputs" / "p" / "1-sft" / "final")


def test_a_method_sweep_on_a_staged_preset_is_refused_in_one_line(workdir):
    result = run_posttrain(["--multirun", "experiment=tictactoe", "method=sft,dpo"], workdir)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("posttrain: error: a sweep over method on experiment=tictactoe")


def write_rows(workdir) -> None:
    """rows.jsonl (prompt/completion) and pairs.jsonl (prompt/chosen/rejected): 64 rows each, so the runs
    below spend their seconds on the command, not on preparing the built-in tic-tac-toe data."""
    (workdir / "rows.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{i} + 1 =", "completion": f" {i + 1}"}) + "\n" for i in range(64))
    )
    (workdir / "pairs.jsonl").write_text("".join(
        json.dumps({"prompt": f"{i} + 1 =", "chosen": f" {i + 1}", "rejected": f" {i + 2}"}) + "\n" for i in range(64)
    ))


@pytest.mark.slow
@pytest.mark.parametrize("args", [
    ["method=dpo", "dataset=local", "dataset.path=pairs.jsonl"],
    ["experiment=tictactoe", "method=dpo", "dataset=local", "dataset.path=pairs.jsonl"],
    ["experiment=null", "dataset=local", "dataset.path=rows.jsonl", "learning_rate=1e-3"],
    ["method=sft", "dataset=local", "dataset.path=rows.jsonl"],
], ids=" ".join)
def test_a_single_run_records_what_cfg_job_printed(workdir, args):
    write_rows(workdir)
    command = [*args, *SHORT, "run_name=r"]
    (printed,) = printed_configs(command, workdir)
    result = run_posttrain(command, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert recorded(workdir / "outputs" / "r") == printed


@pytest.mark.slow
def test_each_stage_records_what_cfg_job_printed(workdir):
    write_rows(workdir)
    # the default preset named, on a file of pairs (SFT trains on the chosen completions); max_steps and the
    # rest of the command line reach every stage
    command = ["experiment=tictactoe", "dataset=local", "dataset.path=pairs.jsonl", *SHORT, "run_name=p"]
    pipeline, sft, dpo = printed_configs(command, workdir)
    result = run_posttrain(command, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    run = workdir / "outputs" / "p"
    assert recorded(run) == pipeline
    assert recorded(run / "1-sft") == sft and recorded(run / "2-dpo") == dpo


@pytest.mark.slow
def test_a_completed_run_is_never_rewritten_by_a_launch_that_trains_nothing(workdir):
    write_rows(workdir)
    command = ["method=sft", "dataset=local", "dataset.path=rows.jsonl", *SHORT, "run_name=done"]
    assert run_posttrain(command, workdir).returncode == 0
    run = workdir / "outputs" / "done"
    record = [run / "config.yaml", run / "results.json", *sorted((run / ".hydra").glob("*.yaml"))]
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in record}

    other = run_posttrain([*command, "learning_rate=1e-3"], workdir)
    assert other.returncode == 1
    assert "completed run with other settings (learning_rate: 0.0005 there, 0.001 now)" in other.stderr
    same = run_posttrain(command, workdir)
    assert same.returncode == 0 and "already complete: nothing to do" in same.stdout

    assert {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in record} == before
    assert json.loads((run / "status.json").read_text())["state"] == "completed"


def test_learning_rate_null_asks_for_the_table(workdir):
    (cfg,) = printed_configs(["method=dpo", "model=qwen2.5-0.5b", "learning_rate=null"], workdir)
    assert cfg["learning_rate"] == 1e-6
