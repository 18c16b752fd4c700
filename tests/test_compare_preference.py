"""experiment=compare_preference is one sweep: six preference methods (ipo as DPO's ipo loss, under its own
name), each over a learning-rate grid and two seeds at the same number of steps, all starting from one SFT
stage that is the same in every job (so the pipeline trains it once and the other jobs copy it)."""

from __future__ import annotations

import json

import pytest
from conftest import run_posttrain
from hydra import compose, initialize_config_module

from posttrain.compose import stage_configs
from posttrain.run.pipeline import stage_key

OVERRIDES = ["experiment=compare_preference"]
METHODS = {"dpo": ("dpo", "sigmoid"), "ipo": ("dpo", "ipo"), "simpo": ("simpo", "simpo"), "orpo": ("orpo", None),
           "kto": ("kto", "kto"), "cpo": ("cpo", "sigmoid")}


def sweep_params() -> dict[str, list[str]]:
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=OVERRIDES, return_hydra_config=True)
    return {key: str(value).split(",") for key, value in cfg.hydra.sweeper.params.items()}


def job_stages(job: list[str]) -> dict:
    """The job's stages as run.job runs them: {name: config less its starting point}."""
    overrides = [*OVERRIDES, *job]
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
        return {name: stage_cfg for name, _, stage_cfg in stage_configs(cfg, overrides, "train")}


def test_the_sweep_crosses_six_methods_with_a_rate_grid_and_two_seeds():
    params = sweep_params()
    assert params["stages.pref.compare"] == list(METHODS)
    assert len(params["stages.pref.learning_rate"]) >= 2 and len(params["stages.pref.seed"]) >= 2
    # every sweep key changes the preference stage only
    assert all(key.startswith("stages.pref.") for key in params)


def some_jobs(params: dict[str, list[str]]) -> list[dict[str, str]]:
    """One job per method, the rates and seeds taken in turn (the whole grid composes in too long a test)."""
    rates, seeds = params["stages.pref.learning_rate"], params["stages.pref.seed"]
    return [{"stages.pref.compare": method, "stages.pref.learning_rate": rates[index % len(rates)],
             "stages.pref.seed": seeds[index // len(rates) % len(seeds)]}
            for index, method in enumerate(params["stages.pref.compare"])]


def test_every_job_starts_from_the_same_sft_stage_and_trains_its_method_for_the_same_steps():
    params = sweep_params()
    sft_keys, steps, rates, seeds = set(), set(), set(), set()
    for chosen in some_jobs(params):
        stages = job_stages([f"{key}={value}" for key, value in chosen.items()])
        assert list(stages) == ["sft", "pref"]
        sft_keys.add(stage_key(stages["sft"], None))
        pref = stages["pref"]
        method, loss = METHODS[chosen["stages.pref.compare"]]
        assert pref.method.name == method and pref.method.args.get("loss_type") == loss
        assert pref.compare == chosen["stages.pref.compare"]  # the name the report groups by
        assert pref.learning_rate == float(chosen["stages.pref.learning_rate"])
        assert pref.seed == int(chosen["stages.pref.seed"]) and stages["sft"].seed == 42
        steps.add((pref.max_steps, pref.batch_size))
        rates.add(pref.learning_rate)
        seeds.add(pref.seed)
    assert len(sft_keys) == 1  # one SFT start: the first job trains it, every other job copies it
    assert len(steps) == 1 and next(iter(steps))[0] > 0  # matched optimizer steps
    assert len(rates) > 1 and len(seeds) > 1  # the jobs checked cover more than one rate and seed


@pytest.mark.slow
def test_one_command_trains_the_sft_start_once_and_the_report_ranks_the_methods(tmp_path):
    """The experiment cut to two methods, one rate, two seeds and a few steps (the shipped grid is the README's
    measured run): four jobs, one SFT stage trained, three copied, and a Methods table of two ranked rows."""
    result = run_posttrain(
        ["--multirun", "experiment=compare_preference", "logger=none", "hydra.sweep.dir=multirun/cmp",
         "stages.pref.compare=dpo,ipo", "stages.pref.learning_rate=1e-3",  # these win over the preset's sweep
         "stages.sft.num_epochs=1", "+stages.sft.max_steps=4", "stages.pref.max_steps=2", "batch_size=8",
         "dataset.eval_fraction=0.02", "eval.limit=48", "training.save_steps=0"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "multirun" / "cmp"
    jobs = sorted(p for p in sweep.iterdir() if (p / "status.json").exists())
    assert len(jobs) == 4
    sft = [json.loads((job / "1-sft" / "status.json").read_text()) for job in jobs]
    assert sum("reused_from" in status for status in sft) == 3  # one SFT start, trained once
    report = run_posttrain([str(sweep)], tmp_path, module="posttrain.report")
    assert report.returncode == 0, report.stderr[-3000:]
    methods = (sweep / "report.md").read_text().split("## Methods", 1)[1]
    assert sorted(line.split(" | ")[1] for line in methods.splitlines() if line.startswith("| 1 ") or
                  line.startswith("| 2 ")) == ["dpo", "ipo"]
    assert "| 2 | 0." in methods  # two seeds at the best rate, a gain over the SFT start
