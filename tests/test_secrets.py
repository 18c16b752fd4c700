"""Credentials never reach what a run writes (config.yaml, .hydra/, metrics, train.log, final/, the W&B
run), remote code runs only when a model config allows it, and weights are safetensors only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_posttrain
from omegaconf import OmegaConf

from posttrain.errors import PosttrainError
from posttrain.models.loading import _random_model, load_model
from posttrain.models.tiny import byte_level_tokenizer
from posttrain.redact import is_secret_name, redact, redact_text

CONF = Path(__file__).parents[1] / "conf"
SECRETS = {
    "HF_TOKEN": "hf_secretvalue123",
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",  # a well-formed (fake) key
}
CONFIG_SECRET = "sekrit-config-value"
# What HF's Trainer keeps beside the weights to resume (optimizer, scheduler, RNG): torch pickles, loaded with
# weights_only=True. Everything else, and all weights, is safetensors/JSON.
TRAINER_STATE_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def test_credential_names_and_values_are_masked():
    for name in ("HF_TOKEN", "hub_token", "WANDB_API_KEY", "model.my_api_key", "db.password", "client_secret"):
        assert is_secret_name(name), name
    for name in ("tokenizer", "max_new_tokens", "pad_token", "TOKENIZERS_PARALLELISM", "num_input_tokens_seen"):
        assert not is_secret_name(name), name
    assert redact({"model": {"tokenizer": "gpt2", "hub_token": "abc"}}) == {"model": {"tokenizer": "gpt2", "hub_token": "***"}}
    assert redact_text("+model.my_api_key=xyz,lr=1 hf_token=abc") == "+model.my_api_key=***,lr=1 hf_token=***"


@pytest.mark.slow  # an end-to-end training run
def test_no_credential_in_any_file_of_the_run(workdir):
    args = [
        "method=sft", "max_steps=4", "batch_size=8", "training.logging_steps=1", "training.save_steps=2",
        "training.keep_checkpoints=true",
        "eval=none", "dataset.eval_fraction=0.02", "dataset.thoughts=false",
        "wandb_project=posttrain-tests", "logger.mode=offline", f"+model.my_api_key={CONFIG_SECRET}", "run_name=s",
    ]
    result = run_posttrain(args, workdir, env={**SECRETS, "WANDB_MODE": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "s"
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb")), "W&B did not write an offline run"

    values = [v.encode() for v in (*SECRETS.values(), CONFIG_SECRET)]
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        data = path.read_bytes()
        assert not any(value in data for value in values), path
    assert not any(value.decode() in result.stdout + result.stderr for value in values)
    assert OmegaConf.load(run / "config.yaml").model.my_api_key == "***"
    assert "+model.my_api_key=***" in (run / ".hydra" / "overrides.yaml").read_text()

    # Weights only as safetensors; the only pickles are the trainer's resume state in checkpoints/.
    assert (run / "final" / "model.safetensors").exists()
    assert not [p for p in (run / "final").rglob("*") if p.name.endswith(PICKLE_SUFFIXES)]
    checkpoints = sorted((run / "checkpoints").glob("checkpoint-*"))
    assert [p.name for p in checkpoints] == ["checkpoint-2", "checkpoint-4"]
    for checkpoint in checkpoints:
        assert (checkpoint / "model.safetensors").exists()
        assert {p.name for p in checkpoint.iterdir() if p.name.endswith(PICKLE_SUFFIXES)} == TRAINER_STATE_FILES


def test_every_model_config_keeps_remote_code_off():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF.resolve()), version_base="1.3"):
        for path in sorted((CONF / "model").glob("*.yaml")):  # composed: hub models inherit it from hub_model.yaml
            assert compose("train", overrides=[f"model={path.stem}", "~experiment"]).model.trust_remote_code is False, path


def _model_dir(tmp_path: Path):
    model_cfg = OmegaConf.load(CONF / "model" / "tiny.yaml")
    tokenizer = byte_level_tokenizer(64)
    model = _random_model(model_cfg, tokenizer, torch.float32)
    model.config.save_pretrained(tmp_path)
    return model_cfg, tokenizer, model


def test_pickled_weights_are_never_loaded(tmp_path):
    model_cfg, tokenizer, model = _model_dir(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    model_cfg.path, model_cfg.init = str(tmp_path), "pretrained"
    with pytest.raises(PosttrainError, match="cannot load model weights"):
        load_model(model_cfg, tokenizer, torch.float32)


def test_remote_code_in_a_model_directory_does_not_run(tmp_path):
    model_cfg, tokenizer, model = _model_dir(tmp_path)
    model.save_pretrained(tmp_path)
    marker = tmp_path / "remote-code-ran"
    (tmp_path / "custom_model.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import LlamaForCausalLM\n"
        "class CustomModel(LlamaForCausalLM):\n    pass\n"
    )
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "custom_model.CustomModel"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model_cfg.path, model_cfg.init = str(tmp_path), "pretrained"
    try:
        loaded = load_model(model_cfg, tokenizer, torch.float32)
    except Exception:  # refusing to load is fine too; running the code is not
        loaded = None
    assert not marker.exists()
    assert loaded is None or type(loaded).__name__ == "LlamaForCausalLM"

    model_cfg.trust_remote_code = True  # the model config opts in: now (and only now) the code runs
    assert type(load_model(model_cfg, tokenizer, torch.float32)).__name__ == "CustomModel"
    assert marker.exists()


def test_sweep_job_folder_names_mask_credential_values():
    from posttrain.naming import job_dir_name

    name = job_dir_name("+model.my_api_key=sekrit123,dpo_beta=0.1")
    assert "sekrit123" not in name and "dpo_beta=0.1" in name
    assert job_dir_name("dpo_beta=0.1,max_new_tokens=5") == "dpo_beta=0.1,max_new_tokens=5"
