"""Evaluation after the fact (python -m posttrain.evaluate) and the best checkpoint kept during training
(training.keep_best)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import read_results, run_posttrain
from safetensors.torch import load_file

pytestmark = pytest.mark.xdist_group("evaluate")  # `pytest -n N`: one worker makes the module's shared run once

SHORT = ["method=sft", "batch_size=8", "dataset.thoughts=false", "logger=none", "training.logging_steps=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-step SFT run with no task evaluation of its own."""
    root = tmp_path_factory.mktemp("evaluate")
    result = run_posttrain([*SHORT, "max_steps=2", "eval=none", "training.save_steps=0", "run_name=e"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, root / "outputs" / "e"


@pytest.mark.slow
def test_a_finished_run_is_scored_and_the_report_shows_it(trained):
    root, run = trained
    result = run_posttrain(["run=outputs/e", "eval=tictactoe", "eval.games=2", "eval.limit=12"], root,
                           module="posttrain.evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run / "eval-tictactoe.json").read_text())
    assert record["evaluator"] == "tictactoe" and record["settings"]["limit"] == 12
    assert record["metrics"]["eval_positions"] == 12 and 0 <= record["metrics"]["optimal_move_rate"] <= 1
    samples = [json.loads(line) for line in (run / "eval-tictactoe.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and all({"prompt", "completion", "move", "optimal"} <= set(s) for s in samples)
    assert "optimal_move_rate" not in read_results(run)  # results.json is the training run's, untouched
    from posttrain.report.reading import read_metrics
    from posttrain.rundir import RunDir

    assert read_metrics(RunDir(run))["optimal_move_rate"] == record["metrics"]["optimal_move_rate"]


@pytest.mark.slow
def test_a_bare_model_directory_is_scored_into_its_own_folder(trained):
    root, run = trained
    result = run_posttrain(["model.path=outputs/e/final", "model.name=base", "eval.games=0", "eval.limit=5"], root,
                           module="posttrain.evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((root / "evaluations" / "base" / "eval-tictactoe.json").read_text())
    assert record["metrics"]["eval_positions"] == 5 and record["metrics"]["games_per_opponent"] == 0


@pytest.mark.parametrize("args, problem", [
    ([], "nothing to evaluate"),
    (["run=outputs/e"], "eval=none scores nothing"),
    (["run=outputs/missing", "eval=tictactoe"], "is not a posttrain run directory"),
])
def test_bad_evaluate_commands_fail_in_one_line(trained, args, problem):
    root, _ = trained
    result = run_posttrain(args, root, module="posttrain.evaluate")
    assert result.returncode == 1 and problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_keep_best_leaves_the_best_checkpoint_as_final(tmp_path):
    """Selecting the *highest* eval loss (keep_best_direction=maximize) picks a checkpoint other than the
    last one of a run whose eval loss falls: final/ must hold exactly that checkpoint's weights."""
    result = run_posttrain([*SHORT, "max_steps=8", "learning_rate=3e-3", "eval=none", "training.eval_steps=2",
                            "training.save_steps=2", "training.save_total_limit=8", "training.keep_checkpoints=true",
                            "training.keep_best=eval/loss", "training.keep_best_direction=maximize", "run_name=kb"],
                           tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "outputs" / "kb"
    losses: dict[int, float] = {}  # the evaluations during training (the final one, of final/, comes last)
    for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()):
        if "eval/loss" in m:
            losses.setdefault(m["step"], m["eval/loss"])
    assert set(losses) == {2, 4, 6, 8} and losses[8] < losses[2]  # it learned
    best = max(losses, key=losses.get)
    assert read_results(run)["best_step"] == best != 8
    final = load_file(run / "final" / "model.safetensors")
    kept = load_file(run / "checkpoints" / f"checkpoint-{best}" / "model.safetensors")
    last = load_file(run / "checkpoints" / "checkpoint-8" / "model.safetensors")
    assert all(torch.equal(final[k], kept[k]) for k in kept)
    assert not all(torch.equal(final[k], last[k]) for k in last)


def test_keep_best_without_evaluations_fails_before_training(tmp_path):
    result = run_posttrain([*SHORT, "training.keep_best=eval/loss"], tmp_path)
    assert result.returncode == 1 and "needs evaluations during training" in result.stderr
    result = run_posttrain([*SHORT, "training.keep_best=eval/loss", "training.eval_steps=3", "training.save_steps=4"],
                           tmp_path)
    assert result.returncode == 1 and "training.save_steps=3" in result.stderr
    result = run_posttrain([*SHORT, "training.keep_best=eval/nll", "training.eval_steps=2", "training.save_steps=2"],
                           tmp_path)
    assert result.returncode == 1 and "keep_best_direction" in result.stderr
