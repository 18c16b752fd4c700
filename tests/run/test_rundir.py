"""The run directory never shows a half-written file as complete, and resume drops what came after the
checkpoint it restarts from."""

from __future__ import annotations

import json

from posttrain.run.rundir import RunDir, read_jsonl, write_atomic


def test_write_atomic_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "results.json"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_torn_last_line_is_ignored(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]


def test_prepare_resume_keeps_only_journaled_checkpoints_and_earlier_metrics(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (10, 20):
        folder = run.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        run.log_checkpoint(folder.name, step, step / 100, folder)
    (run.checkpoints / "checkpoint-30").mkdir()  # a save killed halfway: never journaled
    for step in (10, 20, 30):
        run.log_metrics({"step": step, "loss": 1.0 / step})
    run.write_results({"optimal_move_rate": 0.5})

    checkpoint = run.prepare_resume()

    assert checkpoint == run.checkpoints / "checkpoint-20"
    assert not (run.checkpoints / "checkpoint-30").exists()
    assert [r["step"] for r in read_jsonl(run.metrics)] == [10, 20]
    assert not run.results.exists()


def test_completed_needs_the_marker_and_results(tmp_path):
    run = RunDir(tmp_path / "run")
    run.set_status("running")
    assert not run.is_completed()
    run.write_results({"x": 1})
    assert not run.is_completed()
    run.set_status("completed")
    assert run.is_completed()
    assert json.loads(run.status_file.read_text())["state"] == "completed"
