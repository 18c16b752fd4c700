"""Checks before launch (posttrain.checks): the data rows are read and converted by the front door, so bad
data, and rewards that read columns the data lacks, stop with one line before a job starts, a training
library imports or a model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_posttrain
from omegaconf import OmegaConf

from posttrain.checks import check_data
from posttrain.errors import PosttrainError

LOCAL = Path(__file__).resolve().parents[1] / "conf" / "dataset" / "local.yaml"


def one_line_error(result) -> str:
    line = result.stderr.strip()
    assert result.returncode == 1, result.stderr[-3000:]
    assert "\n" not in line and line.startswith("posttrain: error: ") and "Fix:" in line, result.stderr[-3000:]
    return line


def write_prompts(path: Path, **extra) -> None:
    path.write_text("".join(json.dumps({"prompt": f"{i} + 1 =", **extra}) + "\n" for i in range(16)))


def test_grpo_default_reward_on_plain_prompts_stops_before_any_job_starts(workdir):
    write_prompts(workdir / "prompts.jsonl")
    result = run_posttrain(["method=grpo", "dataset=local", "dataset.path=prompts.jsonl", "max_steps=2"], workdir)
    line = one_line_error(result)
    assert "reward tictactoe reads the dataset column 'board', which prompts.jsonl does not have" in line
    assert "method.rewards=[" in line
    assert not (workdir / "outputs").exists()  # no job started, so no model loaded


def test_bad_rows_stop_before_any_job_starts(workdir):
    (workdir / "rows.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": null, "completion": "b"}\n')
    line = one_line_error(run_posttrain(["method=sft", "dataset=local", "dataset.path=rows.jsonl"], workdir))
    assert "rows.jsonl line 2: field 'prompt' is null" in line
    assert not (workdir / "outputs").exists()


def config(path: Path, rewards: list[dict]):
    dataset = OmegaConf.merge(OmegaConf.load(LOCAL), {"path": str(path)})
    return OmegaConf.create({"dataset": dataset, "method": {"name": "grpo", "rewards": rewards}})


def test_rewards_whose_columns_the_data_has_pass(tmp_path):
    write_prompts(tmp_path / "qa.jsonl", answer="2")
    check_data(config(tmp_path / "qa.jsonl", [{"name": "exact_match", "column": "answer"}, {"name": "format"}]))
    with pytest.raises(PosttrainError, match="reward exact_match reads the dataset column 'solution'"):
        check_data(config(tmp_path / "qa.jsonl", [{"name": "exact_match", "column": "solution"}]))


def test_a_hub_model_that_is_not_cached_fails_fast_while_offline(workdir):
    (workdir / "rows.jsonl").write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    result = run_posttrain(["method=sft", "model.path=someorg/not-cached-model", "dataset=local",
                            "dataset.path=rows.jsonl"], workdir, env={"HF_HUB_OFFLINE": "1"}, timeout=60)
    line = one_line_error(result)
    assert "model.path=someorg/not-cached-model is a hub id that is not in the local cache" in line
    assert "model.init=random" in line and "local model directory" in line
    assert not (workdir / "outputs").exists()  # stopped before any job: no retries, no model loading


@pytest.mark.parametrize("args, expected", [
    (["+method.args.temperatur=0.7"], "method.args.temperatur is not a field of GRPOConfig. Fix: did you mean method.args.temperature?"),
    (["method.args.temperature=hot"], "method.args.temperature must be float, got 'hot' (str)"),
], ids=["typo", "type"])
def test_method_args_are_checked_against_the_trl_config_before_data_or_model_load(workdir, args, expected):
    write_prompts(workdir / "prompts.jsonl")
    result = run_posttrain(["method=grpo", "dataset=local", "dataset.path=prompts.jsonl", "logger=none",
                            "method.rewards=[{name: format}]", *args, "run_name=a"], workdir)
    assert expected in one_line_error(result)
    assert not (workdir / "outputs" / "a" / "metrics.jsonl").exists()
