"""The report's "Methods" view of a sweep that crosses methods with learning rates (experiment=
compare_preference): each method at the rate with its best mean over seeds, ranked best first, with the
sample sd over seeds and the gain over the pipeline's first stage. Synthetic run directories: nothing trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from posttrain.report.reading import read_jobs
from posttrain.report.tables import ranking_keys, ranking_rows
from posttrain.report.write import ranking_section, write_report

START = 0.80
# method -> rate -> the optimal-move rate of seeds 1 and 2
RATES = {
    "dpo": {"0.0003": (0.82, 0.84), "0.001": (0.70, 0.72)},
    "ipo": {"0.0003": (0.85, 0.87), "0.001": (0.90, 0.94)},
    "kto": {"0.0003": (0.76, 0.78), "0.001": (0.79, 0.79)},
}


def fake_job(root: Path, method: str, rate: str, seed: int, value: float | None, start: float = START) -> Path:
    overrides = [f"stages.pref.learning_rate={rate}", f"stages.pref.seed={seed}", f"stages.pref.compare={method}",
                 "experiment=compare_preference"]
    job = root / ",".join(sorted(overrides))
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if value is None:
        (job / "status.json").write_text(json.dumps({"state": "failed", "error": "PosttrainError: boom"}))
        return job
    (job / "status.json").write_text(json.dumps({"state": "completed"}))
    stages = {"sft": {"optimal_move_rate": start, "method": "sft"}, "pref": {"optimal_move_rate": value}}
    for index, (name, results) in enumerate(stages.items(), start=1):  # the stage folders, as a pipeline's
        (job / f"{index}-{name}").mkdir()
        (job / f"{index}-{name}" / "status.json").write_text(json.dumps({"state": "completed"}))
        (job / f"{index}-{name}" / "results.json").write_text(json.dumps(results))
    # the pipeline's results.json, its keys sorted as RunDir writes them ("pref" before "sft")
    (job / "results.json").write_text(json.dumps({"optimal_move_rate": value, "legal_move_rate": 1.0,
                                                  "stages": stages}, sort_keys=True))
    return job


@pytest.fixture
def sweep(tmp_path) -> Path:
    for method, by_rate in RATES.items():
        for rate, values in by_rate.items():
            for seed, value in enumerate(values, start=1):
                fake_job(tmp_path, method, rate, seed, value)
    fake_job(tmp_path, "dpo", "0.001", 3, None)  # a failed job counts for nothing
    return tmp_path


def test_ranking_picks_each_methods_best_rate_and_sorts_best_first(sweep):
    jobs = read_jobs(sweep)
    keys = ["stages.pref.learning_rate", "stages.pref.seed", "stages.pref.compare"]
    assert ranking_keys(keys) == ("stages.pref.compare", "stages.pref.learning_rate")
    header, rows = ranking_rows(jobs, "stages.pref.compare", "stages.pref.learning_rate", "optimal_move_rate")
    assert header[:5] == ["rank", "method", "best learning_rate", "optimal_move_rate (mean ± sd)", "seeds"]
    assert [(row[0], row[1], row[2]) for row in rows] == [(1, "ipo", "0.001"), (2, "dpo", "0.0003"),
                                                          (3, "kto", "0.001")]
    ipo, dpo, kto = rows
    # mean ± sample sd over the two seeds at the best rate; the gain is over the first stage (0.80)
    assert ipo[3] == "0.920 ± 0.028" and ipo[4] == 2 and ipo[5] == "0.120 ± 0.028"
    assert dpo[3] == "0.830 ± 0.014" and kto[3] == "0.790 ± 0.000" and kto[5] == "-0.010 ± 0.000"
    # every rate tried, in rate order, with its mean
    assert dpo[6] == "0.0003: 0.830, 0.001: 0.710"


def test_a_metric_where_lower_is_better_ranks_the_other_way_round(sweep):
    jobs = read_jobs(sweep)
    _, rows = ranking_rows(jobs, "stages.pref.compare", "stages.pref.learning_rate", "optimal_move_rate",
                           maximize=False)
    assert [(row[1], row[2]) for row in rows] == [("dpo", "0.001"), ("kto", "0.0003"), ("ipo", "0.0003")]


def test_a_sweep_without_methods_and_rates_has_no_ranking():
    assert ranking_keys(["learning_rate", "seed"]) is None
    assert ranking_keys(["method", "dpo_beta"]) is None
    assert ranking_keys(["method", "learning_rate"]) == ("method", "learning_rate")


def test_the_methods_section_ranks_on_the_headline_metric(sweep):
    jobs = read_jobs(sweep)
    keys = ["stages.pref.learning_rate", "stages.pref.seed", "stages.pref.compare"]
    section = ranking_section(jobs, keys, "optimal_move_rate")
    assert section.startswith("## Methods\n")
    assert section.index("| 1 | ipo | 0.001 | 0.920 ± 0.028 | 2 | 0.120 ± 0.028 |") < section.index("| 2 | dpo |")
    assert section.index("| 2 | dpo |") < section.index("| 3 | kto |")
    # a sweep that does not cross methods with rates gets no section
    assert ranking_section(jobs, ["stages.pref.seed"], "optimal_move_rate") == ""


def test_report_md_holds_the_methods_table(sweep):
    cfg = OmegaConf.create({"dir": str(sweep), "out": None, "metrics": None, "curves": ["loss"], "max_lines": 10})
    report = write_report(cfg)
    markdown = report.markdown.read_text()
    assert report.ranking and report.ranking in markdown
    # the per-job table stays within report.md's column limit
    job_header = next(line for line in markdown.splitlines() if line.startswith("| job |"))
    assert job_header.count("|") - 1 <= 10


def test_a_rate_with_one_seed_shows_its_value_without_a_spread(tmp_path):
    fake_job(tmp_path, "dpo", "0.001", 1, 0.85)
    fake_job(tmp_path, "ipo", "0.001", 1, 0.75)
    fake_job(tmp_path, "ipo", "0.001", 2, 0.77)
    _, rows = ranking_rows(read_jobs(tmp_path), "stages.pref.compare", "stages.pref.learning_rate", "optimal_move_rate")
    assert rows[0][1:6] == ["dpo", "0.001", "0.850", 1, "0.050"]
    assert rows[1][3] == "0.760 ± 0.014"
