"""`python -m posttrain --multirun dpo_beta=...` is a DPO sweep on the default tic-tac-toe pipeline: one job
per beta, the identical SFT stage trained once and reused by the other jobs."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import read_results, run_posttrain

pytestmark = pytest.mark.slow  # an end-to-end sweep of training runs


def test_beta_sweep_runs_one_job_per_value_and_trains_sft_once(workdir):
    result = run_posttrain(
        # a 2% eval split: scoring the default 10% (1,008 pairs) took most of each 12-step DPO job
        ["--multirun", "dpo_beta=0.05,0.1,0.2", "max_steps=12", "training.logging_steps=4",
         "training.save_steps=0", "eval.games=2", "dataset.eval_fraction=0.02", "hydra.sweep.dir=multirun/beta"],
        workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the sweep ends with its best job (on the headline metric) and the report command
    assert "  best    dataset.eval_fraction=0.02,dpo_beta=" in result.stdout and ": optimal_move_rate " in result.stdout
    assert "  report  python -m posttrain.report " in result.stdout
    jobs = sorted(p for p in (workdir / "multirun" / "beta").iterdir() if p.is_dir())
    # job folders are named by their overrides (Hydra sorts them by key)
    assert [p.name for p in jobs] == [
        f"dataset.eval_fraction=0.02,dpo_beta={beta},eval.games=2,max_steps=12,training.logging_steps=4,"
        "training.save_steps=0"
        for beta in ("0.05", "0.1", "0.2")
    ]
    margins = []
    for job, beta in zip(jobs, (0.05, 0.1, 0.2)):
        dpo_config = yaml.safe_load((job / "2-dpo" / "config.yaml").read_text())
        assert dpo_config["method"]["name"] == "dpo" and dpo_config["method"]["args"]["beta"] == beta
        results = read_results(job)
        assert 0.0 <= results["optimal_move_rate"] <= 1.0
        margins.append(results["eval/rewards/margins"])
    assert len(set(margins)) == 3  # beta changed what DPO did
    reused = [json.loads((job / "1-sft" / "status.json").read_text()).get("reused_from") for job in jobs]
    assert reused[0] is None and reused[1] == reused[2] == str(jobs[0] / "1-sft")
