"""The default learning rate: one table from (method family, model size, LoRA or full fine-tuning) to a rate.

conf/train.yaml's `learning_rate` is `${posttrain.learning_rate:...}`, this module's resolver, so `--cfg job`,
the run directory's name and config.yaml all show the number that trains; a number given on the command
line (or by a preset) replaces the interpolation and always wins.

The table follows the published learning-rate-by-size practice of post-training recipes:
- LoRA trains best at about 10x the full fine-tuning rate (Schulman et al., "LoRA Without Regret", Thinking
  Machines 2025), and the QLoRA paper's 2e-4 for 7B-13B models (1e-4 above 33B) is the SFT LoRA column;
- bigger models take smaller full fine-tuning rates (Tulu 2/3, Zephyr: SFT 1e-5..2e-5 at 7-8B, 5e-6 and
  less at 30B+);
- preference losses move the policy against a reference and diverge at SFT rates: DPO full fine-tuning
  uses 5e-7 at 7B (Zephyr, Tulu 3), about 1e-6 on sub-billion models; SimPO, CPO, ORPO and KTO are run
  in the same range;
- online RL (GRPO, RLOO) takes small steps: 1e-6 with full fine-tuning (DeepSeekMath, TRL's GRPO default),
  about 1e-5 with LoRA;
and the guides posttrain ships: the DPO guide's 1e-5 with LoRA rank 32 on Qwen3-4B..30B (preference LoRA,
1.5B-40B rows), the NLI guide's QLoRA 2e-4 on Mistral-7B (SFT LoRA, 1.5B-10B), and 5e-4 for the tiny
model, which trains from random init (every method and both modes, so CPU runs keep their rate).

The size is the model config's `published_parameters`, else an estimate from `model.architecture`; a model
with neither (a model.path of your own and no architecture) gets the largest band's rates, the smallest in
the table: too slow rather than a destroyed model.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from posttrain.registry import METHODS

# Method families, by how far one step may move the weights: each registry row names its family.
FAMILY_OF = {method.name: method.family for method in METHODS.values()}
# a method the table does not know (a new registry entry) gets the smallest rates of its size band
UNKNOWN_FAMILY = "preference"

# (models below this many parameters, what they are, {family: (full fine-tuning rate, LoRA rate)}), by size.
TABLE: tuple[tuple[float, str, dict[str, tuple[float, float]]], ...] = (
    (50e6, "toy models trained from random init (model=tiny, 1.1M)",
     {"supervised": (5e-4, 5e-4), "preference": (5e-4, 5e-4), "online_rl": (5e-4, 5e-4)}),
    (1.5e9, "SmolLM2-135M, Qwen2.5-0.5B",
     {"supervised": (2e-5, 2e-4), "preference": (1e-6, 1e-5), "online_rl": (1e-6, 1e-5)}),
    (10e9, "SmolLM3-3B, Qwen3-4B, Qwen3-8B, Mistral-7B",
     {"supervised": (1e-5, 2e-4), "preference": (5e-7, 1e-5), "online_rl": (1e-6, 1e-5)}),
    (40e9, "Qwen3-30B-A3B",
     {"supervised": (5e-6, 1e-4), "preference": (3e-7, 1e-5), "online_rl": (5e-7, 5e-6)}),
    (math.inf, "larger models",
     {"supervised": (2e-6, 5e-5), "preference": (2e-7, 5e-6), "online_rl": (3e-7, 3e-6)}),
)

# Vocabulary of posttrain's byte-level tokenizer (models/tiny.py): 256 byte symbols and 4 special tokens. It is
# the vocabulary of an architecture that names none (model=tiny).
BYTE_VOCAB = 260


def estimated_parameters(architecture: Mapping[str, Any]) -> int | None:
    """Parameters of a decoder-only transformer from its config fields (embeddings and head included):
    attention q/k/v/o with grouped KV heads, a gated MLP (or mixture of experts), two norms per layer."""
    hidden, layers = architecture.get("hidden_size"), architecture.get("num_hidden_layers")
    if not hidden or not layers:
        return None
    hidden, layers = int(hidden), int(layers)
    heads = int(architecture.get("num_attention_heads") or max(1, hidden // 64))
    kv_heads = int(architecture.get("num_key_value_heads") or heads)
    head_dim = int(architecture.get("head_dim") or hidden // heads)
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    experts = int(architecture.get("num_experts") or 0)
    if experts:
        expert_width = int(architecture.get("moe_intermediate_size") or architecture.get("intermediate_size"))
        mlp = experts * 3 * hidden * expert_width + hidden * experts  # the experts and the router
    else:
        mlp = 3 * hidden * int(architecture.get("intermediate_size") or 4 * hidden)
    vocab = int(architecture.get("vocab_size") or BYTE_VOCAB)
    embeddings = vocab * hidden * (1 if architecture.get("tie_word_embeddings", True) else 2)
    return layers * (attention + mlp + 2 * hidden) + embeddings + hidden


def model_parameters(model: Mapping[str, Any]) -> int | None:
    """The model config's size: its published parameter count, else the estimate from its architecture."""
    if model.get("published_parameters"):
        return int(model["published_parameters"])
    return estimated_parameters(model.get("architecture") or {})


def uses_adapters(lora_rank, peft) -> bool:
    """LoRA or QLoRA adapters train (lora_rank > 0 and peft is not none), as adapters.uses_lora decides."""
    return str(peft) != "none" and int(lora_rank or 0) > 0


def table_rate(method: str, parameters: int | None, lora: bool) -> float:
    """The table's rate for a method on a model of `parameters` (None = unknown: the largest band)."""
    family = FAMILY_OF.get(method, UNKNOWN_FAMILY)
    if parameters is None:
        rates = TABLE[-1][2]
    else:
        rates = next(rates for below, _, rates in TABLE if parameters < below)
    full, adapter = rates[family]
    return adapter if lora else full


def explain(method: str, model: Mapping[str, Any], lora: bool) -> str:
    """Where the default rate comes from, for the training log."""
    parameters = model_parameters(model)
    if parameters is None:
        size = "unknown size"
    else:
        size = f"{parameters / 1e9:.3g}B" if parameters >= 1e9 else f"{parameters / 1e6:.3g}M"
        size += " parameters" if model.get("published_parameters") else " parameters (estimated)"
    mode = "LoRA" if lora else "full fine-tuning"
    return f"the table for {FAMILY_OF.get(method, UNKNOWN_FAMILY)} methods, {size}, {mode}"


def default_learning_rate(method: str, model: Mapping[str, Any], lora_rank: int, peft: str) -> float:
    """${posttrain.learning_rate:${method.name},${model},${lora_rank},${peft.name}}: the table's rate for this
    run's method, model config and adapters."""
    return table_rate(str(method), model_parameters(model), uses_adapters(lora_rank, peft))


def describe(cfg) -> str:
    """The run's learning rate and where it came from, for the training log (`cfg`: the composed config)."""
    from omegaconf import OmegaConf

    if not OmegaConf.is_interpolation(cfg, "learning_rate"):
        return f"learning_rate={cfg.learning_rate:g} (given in the config or on the command line)"
    lora = uses_adapters(cfg.lora_rank, cfg.peft.name)
    return f"learning_rate={cfg.learning_rate:g} (from {explain(cfg.method.name, cfg.model, lora)})"
