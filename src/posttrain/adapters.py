"""conf/peft/: LoRA and QLoRA adapter settings as peft objects, resolved once per run (resolve_adapters)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Adapters:
    # peft.LoraConfig, or None for full fine-tuning
    lora: Any
    # transformers.BitsAndBytesConfig for QLoRA's 4-bit loading, or None
    quantization: Any

    @property
    def active(self) -> bool:
        """LoRA (or QLoRA) adapters train, not every weight."""
        return self.lora is not None


def resolve_adapters(peft: DictConfig, lora_rank: int, head: str, model_cfg: DictConfig | None = None) -> Adapters:
    """`peft`: the peft group; `lora_rank`: the top-level knob; `head`: the method row's head; `model_cfg`:
    the model group (a mixture of experts changes what LoRA can do)."""
    return Adapters(lora_config(peft, lora_rank, head, mixture_of_experts(model_cfg)), quantization_config(peft))


def mixture_of_experts(model_cfg: DictConfig | None) -> bool:
    """Whether the model's architecture routes tokens to experts (transformers fuses their weights)."""
    architecture = (model_cfg.get("architecture") if model_cfg is not None else None) or {}
    return bool(architecture.get("num_experts") or architecture.get("num_local_experts"))


def uses_lora(peft: DictConfig, lora_rank: int) -> bool:
    return peft.name != "none" and lora_rank > 0


def lora_config(peft: DictConfig, lora_rank: int, head: str, experts: bool = False):
    if not uses_lora(peft, lora_rank):
        return None
    from peft import LoraConfig

    dropout = float(peft.lora_dropout)
    if experts and dropout:
        # transformers stores a mixture's experts as one 3-D weight per layer; peft adapts those weights
        # directly (target_parameters), and that path takes no dropout
        log.info("peft: lora_dropout=0 instead of %s: LoRA on fused expert weights takes no dropout", dropout)
        dropout = 0.0
    targets = peft.target_modules
    if not isinstance(targets, str):
        targets = OmegaConf.to_container(targets, resolve=True)
    return LoraConfig(
        r=int(lora_rank),
        lora_alpha=peft.lora_alpha,
        lora_dropout=dropout,
        target_modules=targets,
        task_type="SEQ_CLS" if head == "sequence_classification" else "CAUSAL_LM",
    )


def quantization_config(peft: DictConfig):
    """4-bit NF4 loading for QLoRA (bitsandbytes); None otherwise."""
    if not peft.get("load_in_4bit", False):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
