"""Padding-free preference batches for TRL's experimental CPOTrainer (cpo, simpo) and ORPOTrainer.

These trainers pad every micro-batch ([chosen; rejected] rows) to its longest sequence and take the model's
full logits (no fused LM head), so the transformer layers spend a large share of each step on pad tokens.
Here the model's forward receives the padded batch as TRL builds it, runs its real tokens as one packed row
(position_ids restart at each sequence, cu_seq_lens mark the sequences, as in posttrain.methods.padding_free)
and scatters the logits back into the padded layout, so TRL's losses are unchanged. The logits of pad
positions are zero, which only changes the logits/chosen and logits/rejected means, which average over pad
positions too. tests/methods/test_padding_free.py checks the losses and gradients against the padded
trainers. A separate module from padding_free because importing trl.experimental is slow and warns.
"""

from __future__ import annotations

import functools

from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer

from posttrain.methods.padding_free import CountsParametersOnce, _inner, sequence_bounds


def pack_padded_logits_forward(forward):
    """Wrap a causal LM's forward so a padded batch without labels runs as one packed row and its logits come
    back padded (zeros at pad positions)."""
    if getattr(forward, "_posttrain_padding_free", False):
        return forward

    @functools.wraps(forward)
    def packed_forward(*args, attention_mask=None, **kwargs):
        input_ids = args[0] if args else kwargs.get("input_ids")
        # only the trainers' scoring forwards, which ask for no cache; generation (a sampling evaluator's
        # model.generate) and anything else runs the model as it is
        if (len(args) > 1 or input_ids is None or attention_mask is None or kwargs.get("use_cache") is not False
                or kwargs.get("labels") is not None or kwargs.get("position_ids") is not None
                or kwargs.get("inputs_embeds") is not None or kwargs.get("fused_lm_head")):
            return forward(*args, attention_mask=attention_mask, **kwargs)
        kwargs.pop("input_ids", None)
        keep = attention_mask.bool()
        positions = keep.long().cumsum(dim=1) - 1
        outputs = forward(input_ids=input_ids[keep].unsqueeze(0), position_ids=positions[keep].unsqueeze(0),
                          **sequence_bounds(keep), **kwargs)
        packed = outputs.logits[0]
        outputs.logits = packed.new_zeros(*keep.shape, packed.size(-1)).index_put((keep,), packed)
        return outputs

    packed_forward._posttrain_padding_free = True
    return packed_forward


class PacksLogitForwards:
    """Padding-free forwards for a trainer that scores padded batches through the model's full logits."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        inner = _inner(self.model)
        inner.forward = pack_padded_logits_forward(inner.forward)


class PaddingFreeCPOTrainer(PacksLogitForwards, CountsParametersOnce, CPOTrainer):
    """TRL's CPOTrainer (cpo and simpo) with each micro-batch's [chosen; rejected] rows as one packed row."""


class PaddingFreeORPOTrainer(PacksLogitForwards, CountsParametersOnce, ORPOTrainer):
    """TRL's ORPOTrainer with each micro-batch's [chosen; rejected] rows as one packed row."""
