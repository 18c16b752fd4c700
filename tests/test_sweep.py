"""The end of a sweep: its summary names each job that did not complete, and the command exits 1 then;
an Optuna search is checked for an objective and direction before it launches."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from posttrain.errors import PosttrainError
from posttrain.sweep import SweepSummary, check_search, failed_job_value


def job(sweep_dir, name: str, **status) -> None:
    (sweep_dir / name).mkdir(parents=True)
    (sweep_dir / name / "status.json").write_text(json.dumps({"updated": "9999-01-01T00:00:00", **status}))


def end_of(sweep_dir) -> None:
    summary = SweepSummary()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    summary.on_multirun_start(config)
    summary.on_multirun_end(config)


def test_a_sweep_whose_jobs_all_completed_ends_normally(tmp_path, capsys):
    job(tmp_path, "learning_rate=0.001", state="completed")
    job(tmp_path, "learning_rate=0.002", state="completed")
    end_of(tmp_path)
    assert f"sweep {tmp_path}: 2 completed, 0 failed, 0 skipped (already complete)" in capsys.readouterr().out


def test_a_sweep_with_a_failed_job_prints_its_cause_and_exits_1(tmp_path, capsys):
    job(tmp_path, "learning_rate=0.001", state="completed")
    job(tmp_path, "learning_rate=9", state="failed", error="loss is nan at step 3")
    with pytest.raises(SystemExit) as exit_:
        end_of(tmp_path)
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "1 completed, 1 failed" in out
    assert "  failed  learning_rate=9: loss is nan at step 3" in out


def test_hydra_lets_the_summary_exit_through_its_callback_guard(tmp_path):
    """Hydra turns an Exception from a callback into a warning; the exit status must not be lost that way."""
    from hydra._internal.callbacks import Callbacks

    job(tmp_path, "learning_rate=9", state="failed", error="boom")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "callbacks": {
        "sweep_summary": {"_target_": "posttrain.sweep.SweepSummary"}}}})
    callbacks = Callbacks(config)
    callbacks.on_multirun_start(config=config)
    with pytest.raises(SystemExit):
        callbacks.on_multirun_end(config=config)


def optuna(**top):
    return OmegaConf.create({**top, "hydra": {"sweeper": {
        "_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper", "direction": "minimize"}}})


def test_an_optuna_search_needs_an_objective_optimized_the_right_way_round():
    with pytest.raises(PosttrainError, match="needs an objective"):
        check_search(optuna())
    with pytest.raises(PosttrainError, match="would minimize optimal_move_rate, where higher is better"):
        check_search(optuna(objective="optimal_move_rate"))
    check_search(optuna(objective="eval/loss"))


def test_a_failed_job_of_a_search_returns_the_worst_value():
    cfg = optuna(objective="eval/loss")
    assert failed_job_value(cfg, cfg.hydra.sweeper) == float("inf")
    assert failed_job_value(OmegaConf.create({"objective": None}), cfg.hydra.sweeper) is None


def test_a_misspelled_objective_stops_before_any_trial():
    with pytest.raises(PosttrainError, match=r"objective 'optimal_move_rte' is not a key.*did you mean objective=optimal_move_rate\?"):
        check_search(optuna(objective="optimal_move_rte", dataset={"name": "tictactoe"}, eval={"name": "tictactoe"}))
    with pytest.raises(PosttrainError, match="objective 'optimal_move_rate' is not a key"):
        check_search(optuna(objective="optimal_move_rate", dataset={"name": "local"}, eval={"name": "none"}))  # no evaluator, no move rates
    check_search(optuna(objective="eval/nll_loss", dataset={"name": "local"}, eval={"name": "none"}))  # eval/ keys are the trainer's
    check_search(optuna(objective="train_loss", dataset={"name": "local"}, eval={"name": "none"}))
