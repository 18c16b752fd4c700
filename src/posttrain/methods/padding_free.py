"""Padding-free preference batches for TRL's DPOTrainer.

TRL 1.16 pads every DPO micro-batch ([chosen; rejected] rows) to its longest sequence and disables its own
padding_free switch, so with completions of mixed lengths the GPU spends a large share of each step on pad
tokens. Here the same trainer runs padding-free: the model's forward (already TRL's fused LM head) receives
the padded batch as TRL builds it, packs the real tokens of every row into one row whose position_ids restart
at each sequence and whose cu_seq_lens mark the sequences (transformers then attends within each sequence
only: the varlen kernels, flex attention's block mask, or a block-causal mask for sdpa/eager), and hands the per-token outputs back in
the padded layout, so TRL's loss, reference log-probabilities and metrics are unchanged. The first label of
every sequence is masked, since in the packed row the token before it belongs to the previous sequence
(in the padded layout that label is never scored either). tests/methods/test_padding_free.py checks the
log-probabilities and the DPO loss against the padded forward.
"""

from __future__ import annotations

import functools

import torch
from trl import DPOTrainer

# FusedCausalLMOutput fields that hold one value per shifted position (batch, length - 1)
PER_TOKEN = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


def pack_padded_forward(forward):
    """Wrap a fused-LM-head forward so a right- or left-padded batch runs as one packed row."""
    if getattr(forward, "_posttrain_padding_free", False):
        return forward

    @functools.wraps(forward)
    def packed_forward(*args, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
        if (args or not fused_lm_head or input_ids is None or attention_mask is None or labels is None
                or kwargs.get("position_ids") is not None or kwargs.get("inputs_embeds") is not None):
            return forward(*args, input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                           fused_lm_head=fused_lm_head, **kwargs)
        keep = attention_mask.bool()
        positions = keep.long().cumsum(dim=1) - 1
        packed_labels = labels.masked_fill(positions == 0, -100)[keep].unsqueeze(0)
        kwargs.pop("position_ids", None)
        outputs = forward(input_ids=input_ids[keep].unsqueeze(0), position_ids=positions[keep].unsqueeze(0),
                          labels=packed_labels, fused_lm_head=True, **sequence_bounds(keep), **kwargs)
        return type(outputs)(**{
            name: _unpack(value, keep) if name in PER_TOKEN and value is not None else value
            for name, value in outputs.items()
        })

    packed_forward._posttrain_padding_free = True
    return packed_forward


def sequence_bounds(keep: torch.Tensor) -> dict:
    """The packed row's cumulative sequence lengths, as TRL's padding-free collator passes them: the varlen
    and flash attention kernels read them (other attentions ignore them) instead of deriving them from
    position_ids in every layer."""
    lengths = keep.sum(dim=1, dtype=torch.int32)
    cu = torch.cat([lengths.new_zeros(1), lengths.cumsum(0, dtype=torch.int32)])
    longest = int(lengths.max())
    return {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}


def _unpack(packed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(1, T - 1) values for predicting packed tokens 1..T-1 -> (rows, length - 1) in the padded layout,
    where [i, j] is the value for predicting token j + 1 of row i; pad positions hold zero."""
    per_token = torch.cat([packed.new_zeros(1, 1), packed], dim=1)[0]  # value for predicting packed token q
    padded = packed.new_zeros(keep.shape).masked_scatter(keep, per_token)
    return padded[:, 1:]


def _inner(model):
    """The module whose forward TRL patched with its fused LM head (the base model under a PEFT wrapper)."""
    model = getattr(model, "module", model)  # DDP
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def pack_forwards(trainer) -> None:
    for model in (trainer.model, getattr(trainer, "ref_model", None)):
        if model is not None:
            inner = _inner(model)
            inner.forward = pack_padded_forward(inner.forward)


class PaddingFreeDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer with padding-free forwards (policy, reference, and the precomputed reference pass)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pack_forwards(self)

    def _precompute_ref_logps(self, *args, **kwargs):
        pack_forwards(self)  # runs inside DPOTrainer.__init__, after the fused head is added
        return super()._precompute_ref_logps(*args, **kwargs)
