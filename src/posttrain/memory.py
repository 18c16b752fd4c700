"""The activation memory a token keeps for the backward pass: the part of the plan's memory model
(posttrain.plan) that the automatic micro-batch (posttrain.hardware) sizes by as well."""

from __future__ import annotations


def model_shape(config) -> dict[str, int]:
    """The sizes the memory model reads, from a transformers config or a model group's architecture."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    h = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or h // heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    routed = int(getattr(text, "num_experts_per_tok", 0) or 0) if getattr(text, "moe_intermediate_size", None) else 0
    inner = int(getattr(text, "moe_intermediate_size", None) or 0) * routed
    inner = inner or int(getattr(text, "intermediate_size", None) or 4 * h)
    return {"h": h, "q": heads * head_dim, "kv": kv_heads * head_dim, "i": inner, "L": int(text.num_hidden_layers),
            "V": int(getattr(text, "vocab_size", None) or 0), "heads": heads, "head_dim": head_dim, "routed": routed}


# bytes per token and vocabulary entry of unfused logits: bf16 logits, their fp32 copy, the fp32 gradient
LOGIT_BYTES = 10


def activation_bytes_per_token(shape: dict[str, int], precision: str, liger: bool, checkpointing: bool,
                               adapted: list[tuple[int, int]] = ()) -> float:
    """Bytes one token keeps for the backward pass over all layers (the activations term of the memory model in posttrain.plan)."""
    b = 4 if precision == "fp32" else 2
    h, q, kv, i, L = (shape[k] for k in ("h", "q", "kv", "i", "L"))
    per_layer = b * (4 * h + 3 * q + 2 * kv + (3 if liger else 4) * i) + (0 if liger else 8 * h)
    # a mixture of experts keeps each routed copy of the token twice more: the expert's gathered input (for its
    # weight gradient) and its output (for the router weight's gradient)
    per_layer += b * 2 * shape.get("routed", 0) * h
    per_layer += b * sum(i_ for i_, _ in adapted) / L  # LoRA dropout's copy of each adapted layer's input
    return L * b * h + per_layer if checkpointing else L * per_layer
