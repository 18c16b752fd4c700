"""LoRA runs save an adapter with its base's identity and get the adapter-disabled base as DPO reference;
W&B logs offline without an API key and never sees credentials."""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl, read_results, run_posttrain

from posttrain.models.loading import load_trained

SHORT = ["max_steps=6", "training.logging_steps=2", "training.save_steps=0", "eval.games=2"]


@pytest.mark.slow  # an end-to-end training run
def test_lora_dpo_on_a_random_init_model_saves_adapter_and_base(workdir):
    result = run_posttrain(["method=dpo", "lora_rank=8", "run_name=lora", *SHORT], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "lora"
    final = run / "final"
    assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()
    assert not (final / "model.safetensors").exists()
    identity = json.loads((final / "posttrain_model.json").read_text())
    assert identity["adapter"] is True
    assert identity["base_model"]["path"] == str(run / "base_model")
    assert (run / "base_model" / "model.safetensors").exists()
    # DPO with LoRA scores the reference with the adapter disabled: rewards start at zero, then move.
    lines = [m for m in read_jsonl(run / "metrics.jsonl") if "rewards/margins" in m]
    assert lines and all(isinstance(m["rewards/margins"], float) for m in lines)
    model, tokenizer = load_trained(str(run))  # adapter merged into the rebuilt base
    assert model.num_parameters() > 500_000 and len(tokenizer) > 256
    assert "legal_move_rate" in read_results(run)


@pytest.mark.slow  # an end-to-end training run
def test_wandb_runs_offline_and_masks_credentials(workdir):
    secret = "hf_SECRETVALUE12345"
    result = run_posttrain(
        ["method=sft", "wandb_project=posttrain-tests", "wandb_name=masked", "run_name=wandb", *SHORT],
        workdir,
        env={"HF_TOKEN": secret, "WANDB_API_KEY": "", "WANDB_MODE": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "wandb"
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert offline_runs, "W&B did not write an offline run"
    for path in run.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in result.stdout + result.stderr


@pytest.mark.slow  # an end-to-end training run
def test_logger_none_writes_metrics_but_no_wandb(workdir):
    result = run_posttrain(["method=sft", "logger=none", "wandb_project=x", "run_name=plain", *SHORT], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "plain"
    assert not (run / "wandb").exists()
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl") if "loss" in m] == [2, 4, 6]
