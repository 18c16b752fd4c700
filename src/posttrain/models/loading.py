"""Model and tokenizer loading for conf/model/: random init from an architecture, a hub id or local
directory, a GGUF file, or the final/ of an earlier posttrain run (LoRA adapters merged into their base).

Weights are read and written as safetensors only; remote code runs only when the model config allows it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from posttrain.errors import PosttrainError
from posttrain.models.tiny import byte_level_tokenizer

log = logging.getLogger(__name__)

# Written into final/ by posttrain: how to rebuild the model it was trained from.
IDENTITY_FILE = "posttrain_model.json"


def resolve_path(path: str | None) -> str | None:
    """A posttrain run directory stands for its final/ model; other paths and hub ids pass through."""
    if not path:
        return None
    candidate = Path(str(path)).expanduser()
    if (candidate / "final").is_dir() and not (candidate / "config.json").exists():
        return str((candidate / "final").resolve())
    return str(candidate) if candidate.exists() else str(path)


def uses_random_init(model_cfg: DictConfig) -> bool:
    return model_cfg.init == "random" or (model_cfg.init == "auto" and not model_cfg.path)


def tokenizer_identity(model_cfg: DictConfig) -> str:
    """Which tokenizer a model config ends up with, as text (part of prepared-data cache keys)."""
    source = model_cfg.tokenizer
    if source is None and not uses_random_init(model_cfg):
        source = resolve_path(model_cfg.path)
    return f"byte-level/{model_cfg.max_length}" if source in (None, "byte") else str(source)


def load_tokenizer(model_cfg: DictConfig):
    source = model_cfg.tokenizer
    if source is None and not uses_random_init(model_cfg):
        source = resolve_path(model_cfg.path)
    if source in (None, "byte"):
        return byte_level_tokenizer(model_cfg.max_length)
    kwargs = {"trust_remote_code": bool(model_cfg.trust_remote_code)}
    if model_cfg.gguf_file and source == resolve_path(model_cfg.path):
        kwargs["gguf_file"] = model_cfg.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError as err:
        raise PosttrainError(
            f"cannot load the tokenizer from {source}: {str(err).splitlines()[0]}",
            "check model.path / model.tokenizer; offline, use a local directory or model.tokenizer=byte",
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _random_model(model_cfg: DictConfig, tokenizer, dtype: torch.dtype) -> PreTrainedModel:
    architecture = OmegaConf.to_container(model_cfg.architecture, resolve=True)
    model_type = architecture.pop("model_type")
    architecture.setdefault("vocab_size", len(tokenizer))
    architecture["vocab_size"] = max(architecture["vocab_size"], len(tokenizer))
    config = AutoConfig.for_model(
        model_type,
        **architecture,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def _pretrained_model(path: str, model_cfg: DictConfig, dtype: torch.dtype, quantization=None) -> PreTrainedModel:
    identity = Path(path) / IDENTITY_FILE
    if identity.exists() and (Path(path) / "adapter_config.json").exists():
        return _merged_adapter_model(Path(path), dtype)
    kwargs = {"dtype": dtype, "trust_remote_code": bool(model_cfg.trust_remote_code)}
    if model_cfg.gguf_file:
        kwargs["gguf_file"] = model_cfg.gguf_file
    else:
        kwargs["use_safetensors"] = True
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as err:
        raise PosttrainError(
            f"cannot load model weights from {path}: {str(err).splitlines()[0]}",
            "point model.path at a directory with safetensors weights (or set model.gguf_file), or at a hub id when online",
        ) from None


def _merged_adapter_model(final_dir: Path, dtype: torch.dtype) -> PreTrainedModel:
    """An earlier run's LoRA output: rebuild its base, apply the adapter, merge it in."""
    from peft import PeftModel

    base_cfg = OmegaConf.create(json.loads((final_dir / IDENTITY_FILE).read_text())["base_model"])
    tokenizer = load_tokenizer(base_cfg)
    base = load_model(base_cfg, tokenizer, dtype)
    return PeftModel.from_pretrained(base, str(final_dir)).merge_and_unload()


def load_model(model_cfg: DictConfig, tokenizer, dtype: torch.dtype, quantization=None) -> PreTrainedModel:
    if uses_random_init(model_cfg):
        model = _random_model(model_cfg, tokenizer, dtype)
        log.info("model: %s with random init (%.2fM parameters)", model_cfg.name, model.num_parameters() / 1e6)
    else:
        path = resolve_path(model_cfg.path)
        model = _pretrained_model(path, model_cfg, dtype, quantization)
        log.info("model: %s from %s (%.2fM parameters)", model_cfg.name, path, model.num_parameters() / 1e6)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_trained(path: str, dtype: torch.dtype = torch.float32):
    """The model and tokenizer a posttrain run produced (a run directory or its final/)."""
    final = resolve_path(path)
    if final is None or not Path(final).is_dir():
        raise PosttrainError(f"{path} is not a run directory or model directory", "pass run=<a run directory with final/>")
    model_cfg = OmegaConf.create({"path": final, "init": "pretrained", "gguf_file": None, "trust_remote_code": False})
    model = _pretrained_model(final, model_cfg, dtype)
    tokenizer = AutoTokenizer.from_pretrained(final)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def model_identity(model_cfg: DictConfig, base_weights: Path | None) -> dict:
    """How to rebuild a run's base model: its config, pointing at saved weights when it had random init."""
    identity = OmegaConf.to_container(model_cfg, resolve=True)
    if base_weights is not None:
        identity.update(path=str(base_weights), init="pretrained", tokenizer=None, gguf_file=None)
    return identity
