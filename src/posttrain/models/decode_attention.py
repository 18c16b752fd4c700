"""Grouped-query attention for compiled decoding without repeated key/value heads.

GRPO and RLOO sample through transformers' generate; under hardware.compile_generation each one-token decode
step runs compiled. transformers' SDPA attention repeats every key/value head of the whole cache to the query
heads when it compiles a decode step with a padding mask (Qwen2.5-0.5B: 7 copies a layer a step), and SDPA then
reads them all. This module registers `sdpa_grouped_decode`: transformers' SDPA attention, except that a decode
step (one query token) asks SDPA for grouped-query attention (`enable_gqa`) on the cache as it is, which
torch.compile fuses without the copies (benchmarks/decode_attention.py measures it against the alternatives).
Prefill and training steps are transformers' own code path.
"""

from __future__ import annotations

import torch.nn.functional as F

NAME = "sdpa_grouped_decode"


def register() -> None:
    """Make `sdpa_grouped_decode` a valid attn_implementation (idempotent), with SDPA's masks."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, grouped_decode_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_grouped_decode_attention(model) -> bool:
    """Switch a model that attends with `sdpa` to `sdpa_grouped_decode`; True when it did (a model with
    another attention implementation is left as it is)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base.config, "_attn_implementation", None) != "sdpa":
        return False
    register()
    base.set_attn_implementation(NAME)
    return True


def grouped_decode_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                                     scaling: float | None = None, **kwargs):
    """transformers' attention signature: query (batch, heads, length, dim), key/value (batch, kv_heads,
    kv_length, dim); returns (batch, length, heads, dim) and no attention weights."""
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    if query.shape[2] != 1 or not grouped or kwargs.get("position_bias") is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                         scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None
