"""The run directory never shows a half-written file as complete, and resume drops what came after the
checkpoint it restarts from."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from posttrain.rundir import RunDir, read_jsonl, write_atomic


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


def test_a_moved_run_directory_still_resumes(tmp_path):
    run = RunDir(tmp_path / "cluster" / "run")
    folder = run.checkpoints / "checkpoint-10"
    folder.mkdir(parents=True)
    run.log_checkpoint(folder.name, 10, 0.1, folder)  # the journal holds the old absolute path
    moved = RunDir((tmp_path / "cluster" / "run").rename(tmp_path / "laptop-run"))
    assert moved.prepare_resume() == moved.checkpoints / "checkpoint-10"
    assert (moved.checkpoints / "checkpoint-10").is_dir()


def test_unfinished_saves_are_removed_and_journaled_ones_kept(tmp_path):
    run = RunDir(tmp_path / "run")
    done = run.checkpoints / "checkpoint-2"
    done.mkdir(parents=True)
    run.log_checkpoint(done.name, 2, 0.1, done)
    (run.checkpoints / "checkpoint-4").mkdir()
    (run.path / ".final.tmp").mkdir()
    removed = run.remove_unfinished_saves()
    assert sorted(p.name for p in removed) == [".final.tmp", "checkpoint-4"]
    assert done.is_dir() and not (run.checkpoints / "checkpoint-4").exists()


def test_hydra_copies_lose_their_credentials(tmp_path):
    run = RunDir(tmp_path / "run")
    hydra = run.path / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text("- lr=1\n- +model.hub_token=hf_abcdefgh\n")
    (hydra / "config.yaml").write_text("model:\n  hub_token: hf_abcdefgh\n  tokenizer: gpt2\n")
    run.write_config(OmegaConf.create({"model": {"hub_token": "hf_abcdefgh", "tokenizer": "gpt2"}}))
    for path in (hydra / "overrides.yaml", hydra / "config.yaml", run.config):
        assert "hf_abcdefgh" not in path.read_text(), path
    assert OmegaConf.load(hydra / "config.yaml").model == {"hub_token": "***", "tokenizer": "gpt2"}
    assert OmegaConf.load(hydra / "overrides.yaml")[1] == "+model.hub_token=***"


def test_a_completed_runs_checkpoints_are_removed_and_its_size_counted(tmp_path):
    run = RunDir(tmp_path / "run")
    (run.checkpoints / "checkpoint-2").mkdir(parents=True)
    (run.checkpoints / "checkpoint-2" / "optimizer.pt").write_bytes(b"x" * 3000)
    run.log_checkpoint("checkpoint-2", 2, 0.5, run.checkpoints / "checkpoint-2")
    run.final.mkdir()
    (run.final / "model.safetensors").write_bytes(b"w" * 1000)
    assert run.disk_bytes() > run.disk_bytes(without_checkpoints=True) >= 1000
    kept = run.disk_bytes(without_checkpoints=True)
    assert run.remove_checkpoints() == 3000
    assert not run.checkpoints.exists() and run.disk_bytes() == kept
    assert run.resumable_checkpoint() is None  # its journal line stays; the folder is gone, so nothing resumes


def test_a_file_removed_while_the_run_is_measured_counts_as_gone_and_followers_leave_checkpoints_to_rank_0(
        tmp_path, monkeypatch):
    """On two processes rank 0 removed checkpoints/ while rank 1 was still measuring the folder, and rank 1
    failed with FileNotFoundError (seen in CI): a follower neither measures nor removes, and a file that
    vanishes mid-count is left out."""
    import os

    from posttrain.distributed import FollowerRunDir

    run = RunDir(tmp_path / "run")
    (run.checkpoints / "checkpoint-2").mkdir(parents=True)
    (run.checkpoints / "checkpoint-2" / "optimizer.pt").write_bytes(b"x" * 3000)
    run.final.mkdir()
    (run.final / "model.safetensors").write_bytes(b"w" * 1000)
    follower = FollowerRunDir(tmp_path / "run")
    assert follower.remove_checkpoints() == 0 and follower.disk_bytes() == 0 and run.checkpoints.is_dir()

    real_lstat = os.lstat

    def vanishing(path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):
            raise FileNotFoundError(path)
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", vanishing)
    assert run.disk_bytes() == 1000
