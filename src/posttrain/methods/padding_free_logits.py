"""Padding-free preference batches through TRL's fused LM head for TRL's experimental CPOTrainer (cpo,
simpo) and ORPOTrainer.

These trainers pad every micro-batch ([chosen; rejected] rows) to its longest sequence and take the model's
full logits (151,936 entries a token for Qwen), which dominate their steps' memory and time. Here they score
through TRL's fused LM head (trl.trainer.utils.add_fused_lm_head: per-token log-probabilities in tiles, never
the whole logits) on packed rows (posttrain.methods.padding_free's forward), and TRL's own losses are computed
from those: the completion's log-probabilities summed or averaged, and the NLL term over the chosen rows (CPO:
their completions; ORPO: prompt and completion, as TRL's ORPO does). The logits/chosen and logits/rejected
metrics become the mean logit over the scored tokens (TRL averages over every position, pads included).
Their batches hold chosen_/rejected_ ids and no input_ids, so transformers' Trainer counts no tokens; here the
real tokens are summed on the GPU and read when the trainer logs, so the runs log tokens/s and MFU.
tests/methods/test_padding_free.py checks the losses and gradients against the padded trainers. A separate
module from padding_free because importing trl.experimental is slow and warns.
"""

from __future__ import annotations

import torch
from trl.experimental.cpo import CPOTrainer
from trl.experimental.orpo import ORPOTrainer
from trl.trainer.utils import add_fused_lm_head

from posttrain.methods.padding_free import CountsParametersOnce, _inner, pack_forwards


class ScoresThroughFusedHead:
    """concatenated_forward for TRL's CPO/ORPO trainers, through the fused LM head on packed rows."""

    # ORPO's NLL term covers the prompt too; CPO's only the completion
    nll_over_prompt = False

    def __init__(self, *args, **kwargs):
        config = kwargs.get("args")
        if config is not None and config.use_liger_kernel:
            # Liger's fused linear cross-entropy replaces the model's forward when training starts, and with it
            # the fused LM head these losses read: keep Liger's other kernels, as TRL's DPOTrainer does
            config.liger_kernel_config = {**(config.liger_kernel_config or {}), "fused_linear_cross_entropy": False}
        super().__init__(*args, **kwargs)
        add_fused_lm_head(_inner(self.model), outputs=("log_probs", "mean_logits"))
        pack_forwards(self)  # wraps the fused forward just added

    def average_log_prob(self) -> bool:
        raise NotImplementedError

    def concatenated_forward(self, model, batch):
        chosen = batch["chosen_labels"].shape[0]
        batch = self.concatenated_inputs(batch, is_encoder_decoder=False,
                                         padding_value=self.padding_value if hasattr(self, "padding_value") else self.pad_token_id,
                                         device=self.accelerator.device)
        input_ids, attention_mask = batch["concatenated_input_ids"], batch["concatenated_attention_mask"]
        completion = batch["concatenated_labels"]
        labels = input_ids.masked_fill(attention_mask == 0, -100) if self.nll_over_prompt else completion
        extra = {"output_router_logits": True} if self.aux_loss_enabled else {}
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True,
                        use_cache=False, **extra)
        scored = completion[:, 1:] != -100
        logps = (outputs.log_probs * scored).sum(-1)
        if self.average_log_prob():
            logps = logps / scored.sum(-1)
        nll_scored = labels[:chosen, 1:] != -100
        nll_loss = -(outputs.log_probs[:chosen] * nll_scored).sum() / nll_scored.sum().clamp(min=1)
        if getattr(self, "cpo_alpha", None) == 0:
            nll_loss = torch.tensor(0.0, device=self.accelerator.device)
        seen = outputs.label_mask
        result = (logps[:chosen], logps[chosen:], outputs.mean_logits[:chosen][seen[:chosen]],
                  outputs.mean_logits[chosen:][seen[chosen:]], nll_loss)
        return (*result, outputs.aux_loss) if self.aux_loss_enabled else result


class CountsPairTokensAtLog:
    """num_input_tokens_seen for [chosen; rejected] batches: each micro-batch's real tokens (prompt and
    completion, chosen and rejected) are summed on the GPU and added when the trainer logs or saves, one read
    per log rather than a host sync per micro-batch."""

    _pending_tokens: torch.Tensor | None = None

    def _track_num_input_tokens(self, inputs):  # transformers' Trainer counts num_input_tokens_seen here
        if self.args.include_num_input_tokens_seen == "no" or "chosen_attention_mask" not in inputs:
            return super()._track_num_input_tokens(inputs)
        tokens = inputs["chosen_attention_mask"].sum() + inputs["rejected_attention_mask"].sum()
        self._pending_tokens = tokens if self._pending_tokens is None else self._pending_tokens + tokens

    def _count_pending_tokens(self) -> None:
        if self._pending_tokens is not None:
            pending, self._pending_tokens = self._pending_tokens.to(torch.int64), None
            self.state.num_input_tokens_seen += int(self.accelerator.gather(pending).sum())

    def log(self, *args, **kwargs):
        self._count_pending_tokens()
        return super().log(*args, **kwargs)

    def _save_checkpoint(self, *args, **kwargs):
        self._count_pending_tokens()
        return super()._save_checkpoint(*args, **kwargs)


class PaddingFreeCPOTrainer(ScoresThroughFusedHead, CountsPairTokensAtLog, CountsParametersOnce, CPOTrainer):
    """TRL's CPOTrainer (cpo, simpo) scoring packed rows through the fused LM head."""

    def average_log_prob(self) -> bool:
        return self.loss_type in ("ipo", "simpo")  # as TRL's CPO


class PaddingFreeORPOTrainer(ScoresThroughFusedHead, CountsPairTokensAtLog, CountsParametersOnce, ORPOTrainer):
    """TRL's ORPOTrainer scoring packed rows through the fused LM head."""

    nll_over_prompt = True

    def average_log_prob(self) -> bool:
        return True  # the odds ratio compares mean log-probabilities, as TRL's ORPO
