"""posttrain.sample's command line: --help lists its fields, and a bad request is one line, before any model
loads (sampling itself is tested on the default run's model in test_default_run.py)."""

from __future__ import annotations

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
