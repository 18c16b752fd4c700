"""Prompts padded to a few lengths inside generate only, for compiled decoding with a static KV cache.

Under hardware.compile_generation transformers compiles one decoding graph per static cache length (the prompt
plus max_new_tokens), so prompts are left-padded to a multiple of a few dozen tokens to keep the shapes few.
TRL's own `pad_to_multiple_of` pads the prompts the same way, but also pads the completions and the training
batch built from both, so every log-probability and training forward pass would carry up to that many pad
tokens per prompt and per completion. Here the padding is added on the way into `generate` and taken off its
output: generate sees the few padded shapes, and the trainer sees the sequences it would see unpadded.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def pad_prompts_for_generate(model, multiple: int) -> None:
    """Wrap `model.generate` (the model object TRL calls, a PeftModel included) so that its prompts are
    left-padded to a multiple of `multiple` tokens and its output starts where the caller's prompt starts."""
    generate = model.generate

    @functools.wraps(generate)
    def padded_generate(*args, **kwargs):
        input_ids, attention_mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if args or input_ids is None or attention_mask is None:
            return generate(*args, **kwargs)
        extra = (-input_ids.shape[1]) % multiple
        per_token = any(isinstance(value, torch.Tensor) and value.shape[:2] == input_ids.shape
                        for key, value in kwargs.items() if key not in ("input_ids", "attention_mask"))
        if not extra or per_token:
            # per-token extras (multimodal token types) would need the same padding: passed on as they are
            return generate(**kwargs)
        config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
        pad_id = getattr(config, "pad_token_id", None)
        kwargs["input_ids"] = F.pad(input_ids, (extra, 0), value=0 if pad_id is None else int(pad_id))
        kwargs["attention_mask"] = F.pad(attention_mask, (extra, 0), value=0)
        output = generate(**kwargs)
        if isinstance(output, torch.Tensor):
            return output[:, extra:]
        output.sequences = output.sequences[:, extra:]
        return output

    model.generate = padded_generate
