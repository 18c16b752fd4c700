"""Padding-free preference batches for TRL's DPOTrainer and KTOTrainer.

TRL 1.16 pads every DPO micro-batch ([chosen; rejected] rows) to its longest sequence and disables its own
padding_free switch, so with completions of mixed lengths the GPU spends a large share of each step on pad
tokens. Here the same trainer runs padding-free: the model's forward (already TRL's fused LM head) receives
the padded batch as TRL builds it, packs the real tokens of every row into one row whose position_ids restart
at each sequence and whose cu_seq_lens mark the sequences (transformers then attends within each sequence
only: the varlen kernels, flex attention's block mask, or a block-causal mask for sdpa/eager), and hands the per-token outputs back in
the padded layout, so TRL's loss, reference log-probabilities and metrics are unchanged. The first label of
every sequence is masked, since in the packed row the token before it belongs to the previous sequence
(in the padded layout that label is never scored either). KTOTrainer scores its padded completions (and
its KL batch) through the same fused head, so it runs packed the same way. tests/methods/test_padding_free.py
checks the log-probabilities and the DPO and KTO losses against the padded forward.

TRL's SFTTrainer already packs padding-free (packing=True, padding_free=True); PaddingFreeSFTTrainer keeps
its loss and metrics but never makes the host wait for the GPU inside a training step: TRL and transformers
read back the micro-batch's token count and its entropy/accuracy sums after every forward and backward,
each read a sync that drains the GPU's queue, so the GPU then idles while the host clips, steps, collates
the next batch and launches its forward. Here a padding-free batch's token count is its size (no pad token,
known on the host) and the metric sums stay on the GPU until the trainer logs.
"""

from __future__ import annotations

import functools

import torch
from trl import DPOTrainer, KTOTrainer, SFTTrainer

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


class CountsParametersOnce:
    """transformers' Trainer.floating_point_ops (6 x non-embedding parameters x tokens, summed into total_flos)
    walks every module and parameter after each micro-batch, host time the GPU waits through; the count cannot
    change while training, so it is taken once."""

    def floating_point_ops(self, inputs) -> int:
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return super().floating_point_ops(inputs)
        cached = getattr(self, "_non_embedding_parameters", None)
        if cached is None or cached[0] is not self.model:
            cached = self._non_embedding_parameters = (self.model, self.model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main_input].numel() * cached[1]


class PacksForwards:
    """Padding-free forwards for a TRL trainer that scores padded batches through its fused LM head (DPO, KTO):
    the policy's, the reference's and the precomputed reference pass's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        pack_forwards(self)

    def _precompute_ref_logps(self, *args, **kwargs):
        pack_forwards(self)  # runs inside the trainer's __init__, after the fused head is added
        return super()._precompute_ref_logps(*args, **kwargs)


class PaddingFreeDPOTrainer(PacksForwards, CountsParametersOnce, DPOTrainer):
    """TRL's DPOTrainer with padding-free forwards ([chosen; rejected] rows of a micro-batch as one packed row)."""


class PaddingFreeKTOTrainer(PacksForwards, CountsParametersOnce, KTOTrainer):
    """TRL's KTOTrainer with padding-free forwards (the completions and the KL batch's mismatched pairs)."""


class PaddingFreeSFTTrainer(CountsParametersOnce, SFTTrainer):
    """TRL's SFTTrainer with the per-micro-batch reads of its padding-free training steps deferred to the log
    step. Anything else (evaluation, several processes, a custom or DFT loss, label smoothing, MoE aux loss,
    padded batches) runs TRL's own code; tests/methods/test_padding_free.py checks both agree."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending_sums: list[torch.Tensor] = []  # per micro-batch: [label tokens, entropy sum, top-1 hits]

    def _deferrable(self, inputs) -> bool:
        return (self.model.training and self.args.world_size == 1 and "position_ids" in inputs
                and "attention_mask" not in inputs and self.compute_loss_func is None
                and self.label_smoother is None and not self.aux_loss_enabled and self.args.loss_type == "nll")

    def _track_num_input_tokens(self, inputs):  # transformers' Trainer counts num_input_tokens_seen here
        if self.args.include_num_input_tokens_seen == "no" or not self._deferrable(inputs):
            return super()._track_num_input_tokens(inputs)
        self.state.num_input_tokens_seen += inputs["input_ids"].numel()  # padding-free: every token is real

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not self._deferrable(inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # TRL's plain path (SFTTrainer.compute_loss): the fused LM head's summed negative log-likelihood
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = -outputs.log_probs.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        with torch.no_grad():
            self._pending_sums.append(torch.stack([outputs.label_mask.sum().float(), outputs.entropy.sum().float(),
                                                   outputs.is_top1.sum().float()]))
        self._total_train_tokens += inputs["position_ids"].size(1)
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._pending_sums:  # one read for the whole logging window
            for valid, entropy, correct in torch.stack(self._pending_sums).tolist():
                self._metrics["train"]["entropy"].append(entropy / valid if valid > 0 else 0.0)
                self._metrics["train"]["mean_token_accuracy"].append(correct / valid if valid > 0 else 0.0)
            self._pending_sums.clear()
        super().log(logs, start_time)
