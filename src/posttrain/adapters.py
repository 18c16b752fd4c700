"""conf/peft/: LoRA and QLoRA adapter settings as peft objects (None means full fine-tuning)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from posttrain.registry import get_method


def uses_lora(cfg: DictConfig) -> bool:
    return cfg.peft.name != "none" and cfg.lora_rank > 0


def lora_config(cfg: DictConfig):
    if not uses_lora(cfg):
        return None
    from peft import LoraConfig

    targets = cfg.peft.target_modules
    if not isinstance(targets, str):
        targets = OmegaConf.to_container(targets, resolve=True)
    return LoraConfig(
        r=int(cfg.lora_rank),
        lora_alpha=cfg.peft.lora_alpha,
        lora_dropout=cfg.peft.lora_dropout,
        target_modules=targets,
        task_type="SEQ_CLS" if get_method(cfg.method.name).head == "sequence_classification" else "CAUSAL_LM",
    )


def quantization_config(cfg: DictConfig):
    """4-bit NF4 loading for QLoRA (bitsandbytes); None otherwise."""
    if not cfg.peft.get("load_in_4bit", False):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
