"""Trainers that build their own reference (GRPO and RLOO with a KL term, beta != 0) get the model's starting
weights with full fine-tuning, as DPO gets its frozen copy: a random-init model has no hub id to load one
from, so they load the copy saved under the run directory."""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl, run_posttrain

SHORT = ["max_steps=2", "batch_size=8", "eval=none", "training.save_steps=0", "training.logging_steps=1",
         "logger=none", "method.args.max_completion_length=8", "method.rewards=[{name: format, pattern: '[0-9]'}]"]


@pytest.mark.slow  # an end-to-end training run
@pytest.mark.parametrize("method, beta", [("rloo", None), ("grpo", "0.04")])
def test_online_rl_with_a_kl_term_trains_from_a_random_init_model(workdir, method, beta):
    (workdir / "prompts.jsonl").write_text("".join(json.dumps({"prompt": f"{i} + 1 ="}) + "\n" for i in range(16)))
    extra = [f"method.args.beta={beta}"] if beta else []
    result = run_posttrain([f"method={method}", "dataset=local", "dataset.path=prompts.jsonl", *SHORT, *extra,
                            "run_name=r"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "r"
    assert (run / "reference_model" / "config.json").exists()
    assert any("kl" in line for line in read_jsonl(run / "metrics.jsonl"))
