"""The end of a run prints its headline results as a short table, each stage's change from the one before,
and where its model and results are (not a dict of every figure)."""

from __future__ import annotations

import json

from posttrain.rundir import RunDir
from posttrain.summary import summary_lines


def finished(path, results: dict) -> RunDir:
    run = RunDir(path)
    run.path.mkdir(parents=True)
    run.set_status("completed")
    run.write_results(results)
    return run


def test_a_pipeline_shows_each_stage_and_its_gain(tmp_path):
    finished(tmp_path / "run" / "1-sft", {"method": "sft", "optimal_move_rate": 0.851, "legal_move_rate": 0.99,
                                         "train_loss": 0.41, "train_seconds": 200.0, "tokens_per_second": 1234.5})
    finished(tmp_path / "run" / "2-dpo", {"method": "dpo", "optimal_move_rate": 0.896, "legal_move_rate": 0.995,
                                         "train_loss": 0.6, "train_seconds": 40.0, "vs_random_win_rate": 0.7})
    run = RunDir(tmp_path / "run")
    lines = summary_lines(run)
    assert lines[0] == f"run complete: {run.path}"
    header, sft, dpo = lines[1].split(), lines[2].split(), lines[3].split()
    assert header == ["stage", "optimal_move_rate", "legal_move_rate", "train_loss", "time", "tokens/s"]
    assert sft == ["sft", "0.851", "0.99", "0.41", "3.3", "min", "1,234"]
    assert dpo[:3] == ["dpo", "0.896", "(+0.045)"] and dpo[-3:] == ["40", "s", "-"]
    assert lines[-2] == f"model: {run.final}" and str(run.results) in lines[-1]
    assert not any("vs_random_win_rate" in line for line in lines)  # headline figures only


def test_a_single_run_is_one_row_named_by_its_method(tmp_path):
    run = finished(tmp_path / "run", {"method": "dpo", "eval/loss": 0.5, "eval/rewards/accuracies": 0.75})
    lines = summary_lines(run)
    assert lines[1].split() == ["stage", "eval/loss", "eval/rewards/accuracies", "time", "tokens/s"]
    assert lines[2].split() == ["dpo", "0.5", "0.75", "-", "-"]
    assert json.loads(run.results.read_text())["method"] == "dpo"
