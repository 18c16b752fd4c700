"""`python -m posttrain.report DIR` tabulates and plots a sweep (also one still running or partly failed), and
`hydra/sweeper=optuna_tictactoe` searches hyperparameters with Optuna, scored by a results.json key."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import read_jsonl, read_results, run_posttrain

from posttrain.report.reading import read_state
from posttrain.rundir import RunDir

pytestmark = pytest.mark.xdist_group("report")  # `pytest -n N`: one worker makes the module's shared run once

# A few optimizer steps of SFT, a small held-out evaluation without thoughts (short generations).
TINY = ["method=sft", "max_steps=3", "batch_size=8", "training.save_steps=0", "training.logging_steps=1",
        "dataset.thoughts=false", "dataset.eval_fraction=0.02", "eval.games=2", "logger=none"]
RATES = ("0.001", "0.002", "0.004")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A finished 3-job learning-rate sweep (trained once for the whole module)."""
    root = tmp_path_factory.mktemp("report")
    result = run_posttrain(
        ["--multirun", *TINY, f"learning_rate={','.join(RATES)}", "hydra.sweep.dir=multirun/lr"], root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "multirun" / "lr"


def job_for(sweep_dir, rate: str):
    return next(p for p in sweep_dir.iterdir() if p.is_dir() and f"learning_rate={rate}," in p.name)


def read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_png(path):
    assert path.is_file() and path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow  # an end-to-end training run
def test_report_tabulates_and_plots_a_sweep(sweep, tmp_path):
    result = run_posttrain([str(sweep)], tmp_path, module="posttrain.report")  # the bare DIR form
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"report: {sweep / 'report.md'}" in result.stdout

    rows = read_csv(sweep / "report.csv")
    # one row per job, in launch order; only the swept key is a column (method, max_steps ... are the same)
    assert [row["learning_rate"] for row in rows] == list(RATES)
    # (results.json's string "method" is no metric either)
    assert "method" not in rows[0] and "max_steps" not in rows[0]
    assert [row["state"] for row in rows] == ["completed"] * 3
    for row, rate in zip(rows, RATES):
        results = read_results(job_for(sweep, rate))
        for key in ("train_loss", "eval/loss", "legal_move_rate", "optimal_move_rate"):
            assert float(row[key]) == pytest.approx(results[key])

    markdown = (sweep / "report.md").read_text()
    # report.md leads with the result: the swept key, then the headline metrics (report.csv has them all)
    header = "| job | learning_rate | state | optimal_move_rate | legal_move_rate | train_loss | eval/loss |"
    assert header in markdown and "eval/entropy" not in markdown and "eval/entropy" in rows[0]
    assert markdown.count("| completed |") == 3
    # the run's own figures are summed, not tabled: the sweep's size on disk (every job's files)
    on_disk = sum(p.stat().st_size for rate in RATES for p in job_for(sweep, rate).rglob("*")
                  if p.is_file() and not p.is_symlink())
    assert f"3 jobs: 3 completed; {on_disk / 2**20:,.0f} MiB on disk" in markdown and "disk_mib" not in markdown

    # eval/loss differs between the learning rates, so it is plotted against them; every job's loss curve
    assert_png(sweep / "plots" / "eval-loss_vs_learning_rate.png")
    assert_png(sweep / "plots" / "train_loss_vs_learning_rate.png")
    assert_png(sweep / "plots" / "learning_curves.png")
    assert "![eval-loss_vs_learning_rate](plots/eval-loss_vs_learning_rate.png)" in markdown


@pytest.mark.slow  # an end-to-end training run
def test_report_marks_failed_and_killed_jobs(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("final", "report*", "plots"))
    failed, completed, killed = (job_for(copy, rate) for rate in RATES)
    # what a job that failed leaves: status failed with its one-line error, no results.json
    (failed / "status.json").write_text(json.dumps({"state": "failed", "error": "PosttrainError: boom | bang"}))
    (failed / "results.json").unlink()
    # a job left 'running' by a sweep process that was killed
    dead = _dead_pid()
    (killed / "status.json").write_text(json.dumps({"state": "running", "host": socket.gethostname(), "pid": dead}))
    (killed / "results.json").unlink()
    out = tmp_path / "out"

    result = run_posttrain([f"dir={copy}", f"out={out}"], tmp_path, module="posttrain.report")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_csv(out / "report.csv")
    assert [(row["learning_rate"], row["state"]) for row in rows] == [
        ("0.001", "failed"), ("0.002", "completed"), ("0.004", "interrupted")
    ]
    assert rows[0]["error"] == "PosttrainError: boom | bang"
    assert f"process {dead} on" in rows[2]["error"]
    assert rows[0]["eval/loss"] == rows[2]["eval/loss"] == ""
    assert float(rows[1]["eval/loss"]) == pytest.approx(read_results(completed)["eval/loss"])
    markdown = (out / "report.md").read_text()
    assert "3 jobs: 1 failed, 1 completed, 1 interrupted" in markdown
    assert f"- {failed.name}: PosttrainError: boom | bang" in markdown and "| failed |" in markdown
    # every job's learning curve so far is drawn; one final value per metric is nothing to plot against a knob
    assert_png(out / "plots" / "learning_curves.png")
    assert not list((out / "plots").glob("*_vs_*.png"))
    assert not (copy / "report.md").exists()


@pytest.mark.slow  # an end-to-end training run
def test_a_running_job_whose_process_lives_stays_running(sweep, tmp_path):
    job = tmp_path / "job"
    shutil.copytree(job_for(sweep, "0.002"), job, ignore=shutil.ignore_patterns("final"))
    (job / "status.json").write_text(json.dumps({"state": "running", "host": socket.gethostname(), "pid": os.getpid()}))
    assert read_state(RunDir(job)) == ("running", "")


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.mark.slow  # an end-to-end training run
def test_report_of_a_single_run_lists_its_overrides(sweep, tmp_path):
    job = job_for(sweep, "0.002")
    result = run_posttrain([f"dir={job}", f"out={tmp_path}"], tmp_path, module="posttrain.report")
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = read_csv(tmp_path / "report.csv")
    assert row["learning_rate"] == "0.002" and row["method"] == "sft" and row["state"] == "completed"
    assert_png(tmp_path / "plots" / "learning_curves.png")
    steps = [r["step"] for r in read_jsonl(job / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["/no/such/dir"], "/no/such/dir is not a folder. Fix: give a sweep folder"),
        ([], "missing dir. Fix: dir=... on the command line"),
    ],
)
def test_report_of_a_bad_dir_fails_in_one_line(tmp_path, args, expected):
    result = run_posttrain(args, tmp_path, module="posttrain.report")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posttrain: error: ") and expected in lines[0]


@pytest.mark.slow  # an end-to-end training run
def test_report_of_a_folder_without_runs_names_the_sweeps_in_it(sweep, tmp_path):
    result = run_posttrain([str(sweep.parent)], tmp_path, module="posttrain.report")
    assert result.returncode == 1
    assert "holds no runs" in result.stderr and f"Fix: give one of: {sweep}" in result.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (["hydra/sweeper=optuna"], "the optuna sweeper needs an objective"),
        (["hydra/sweeper=optuna", "objective=optimal_move_rate"],
         "the optuna sweeper would minimize optimal_move_rate, where higher is better. "
         "Fix: hydra.sweeper.direction=maximize"),
        (["hydra/sweeper=optuna_tictactoe", "objective=eval/loss"],
         "the optuna sweeper would maximize eval/loss, where lower is better. Fix: hydra.sweeper.direction=minimize"),
    ],
)
def test_optuna_sweep_without_a_right_objective_stops_before_training(tmp_path, args, expected):
    result = run_posttrain(["--multirun", *args], tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr
    assert not (tmp_path / "multirun").exists()


@pytest.mark.slow  # an end-to-end training run
def test_optuna_preset_finds_the_best_trial(tmp_path):
    sweep_dir = tmp_path / "multirun" / "search"
    result = run_posttrain(
        ["--multirun", "hydra/sweeper=optuna_tictactoe", "hydra.sweeper.params=null", "hydra.sweeper.n_trials=3",
         "objective=eval/loss", "hydra.sweeper.direction=minimize", *TINY,
         "learning_rate=tag(log,interval(1e-3,1e-2))", f"hydra.sweep.dir={sweep_dir}"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = {}
    for job in (p for p in sweep_dir.iterdir() if p.is_dir()):
        overrides = dict(line.split("=", 1) for line in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        trials[float(overrides["learning_rate"])] = read_results(job)["eval/loss"]
    assert len(trials) == 3
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best_rate = min(trials, key=trials.get)
    assert best["best_value"] == pytest.approx(trials[best_rate])
    assert best["best_params"]["learning_rate"] == pytest.approx(best_rate)

    report = run_posttrain([str(sweep_dir)], tmp_path, module="posttrain.report")
    assert report.returncode == 0, report.stderr[-3000:]
    assert [row["state"] for row in read_csv(sweep_dir / "report.csv")] == ["completed"] * 3
    assert "Optuna best value:" in (sweep_dir / "report.md").read_text()
    assert_png(sweep_dir / "plots" / "eval-loss_vs_learning_rate.png")


def _job(number: int, **metrics):
    from posttrain.report.reading import Job

    return Job(path=Path(f"/nonexistent/{number}"), name=str(number), number=number, overrides={}, swept=set(),
               state="completed", metrics=metrics)


def test_plots_show_the_results_that_differ_and_losses_only_when_no_result_differs():
    from posttrain.report.reading import plotted_names

    headline = ["optimal_move_rate", "legal_move_rate", "train_loss", "eval/loss"]
    learned = [_job(0, optimal_move_rate=0.8, legal_move_rate=1.0, train_loss=1.0, **{"eval/loss": 2.0}),
               _job(1, optimal_move_rate=0.9, legal_move_rate=1.0, train_loss=0.9, **{"eval/loss": 1.5})]
    # a result differs: it alone is plotted (losses of different settings are no result); the flat one is named
    assert plotted_names(learned, headline) == (["optimal_move_rate"], ["legal_move_rate"])
    flat = [_job(0, optimal_move_rate=0.0, legal_move_rate=0.0, train_loss=1.0),
            _job(1, optimal_move_rate=0.0, legal_move_rate=0.0, train_loss=0.9)]
    assert plotted_names(flat, headline) == (["train_loss"], ["optimal_move_rate", "legal_move_rate"])
