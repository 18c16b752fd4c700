"""Padding-free DPO (hardware.packing on a GPU) must score exactly what the padded batch scores: per-token
log-probabilities and the DPO and KTO losses of one batch equal TRL's padded forward within 1e-3, on CPU. Padding-free
SFT's deferred reads must log what TRL's SFTTrainer logs."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer
from trl.trainer.utils import add_fused_lm_head

from posttrain.methods.padding_free import (PaddingFreeDPOTrainer, PaddingFreeKTOTrainer, PaddingFreeSFTTrainer,
                                            pack_padded_forward)
from posttrain.models import attention as varlen_attention
from posttrain.models.tiny import byte_level_tokenizer


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


PAIRS = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in (
    ("2+2=", " 4", " five, or so I believe"), ("Name a colour:", " a deep shade of blue", " no"),
    ("Say hi:", " hi", " goodbye and good luck to you all"), ("1+1=", " two", " 3"))]


def training_model(tokenizer) -> LlamaForCausalLM:
    """The same tiny model for both trainers of a comparison, sized to the tokenizer, in training mode."""
    model = tiny_model(seed=3).train()
    model.config.vocab_size = len(tokenizer)
    model.resize_token_embeddings(len(tokenizer))
    return model


def loss_and_gradient(trainer, model, batch) -> tuple[float, torch.Tensor]:
    """One batch's loss and the gradient it leaves on the first attention layer's query weight."""
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    return loss.item(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()


def padded_batch(side: str):
    """Four rows of different lengths, padded on `side`, a prompt of 3 tokens then the completion."""
    torch.manual_seed(1)
    lengths = [9, 17, 5, 12]
    longest = max(lengths)
    ids = torch.zeros(len(lengths), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    completion = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        span = slice(0, n) if side == "right" else slice(longest - n, longest)
        ids[row, span] = torch.randint(1, 300, (n,))
        mask[row, span] = 1
        completion[row, span] = torch.tensor([0] * 3 + [1] * (n - 3))
    return ids, mask, ids.masked_fill(completion == 0, -100)


@pytest.mark.parametrize("attention", ["sdpa", "varlen"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_packed_forward_gives_the_padded_per_token_log_probs(side, attention):
    """The packed row (sdpa: block-causal mask from position_ids; varlen: the forward's cu_seq_lens) against
    the padded batch through sdpa."""
    model = tiny_model()
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    ids, mask, labels = padded_batch(side)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        if attention == "varlen":
            varlen_attention.register()
            model.set_attn_implementation("varlen")
        packed = pack_padded_forward(model.forward)(input_ids=ids, attention_mask=mask, labels=labels,
                                                     fused_lm_head=True)
    assert packed.log_probs.shape == padded.log_probs.shape
    assert torch.equal(packed.label_mask, padded.label_mask)
    assert torch.allclose(packed.log_probs, padded.log_probs, atol=1e-3)
    assert torch.allclose(packed.entropy, padded.entropy, atol=1e-3)
    assert padded.log_probs.abs().sum() > 1  # the comparison is of real values, not of zeros
    assert torch.allclose(packed.loss, padded.loss, atol=1e-3)


def test_padding_free_dpo_loss_and_gradients_equal_the_padded_ones(tmp_path):
    tokenizer = byte_level_tokenizer(256)
    rows = PAIRS
    losses, grads = [], []
    for trainer_class in (DPOTrainer, PaddingFreeDPOTrainer):
        model = training_model(tokenizer)
        args = DPOConfig(output_dir=str(tmp_path / trainer_class.__name__), per_device_train_batch_size=4,
                         use_cpu=True, report_to=[], precompute_ref_log_probs=True, max_length=64)
        trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        assert batch["attention_mask"].sum() < batch["attention_mask"].numel()  # the batch has padding
        loss, grad = loss_and_gradient(trainer, model, batch)
        losses.append(loss)
        grads.append(grad)
    assert abs(losses[0] - losses[1]) < 1e-3
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


@pytest.mark.parametrize("precompute", [True, False])
def test_padding_free_kto_loss_and_gradients_equal_the_padded_ones(tmp_path, precompute):
    """KTO's completions and its KL batch (mismatched prompt/completion pairs), with the reference precomputed
    or scored in the step."""
    tokenizer = byte_level_tokenizer(256)
    rows = [{"prompt": p, "completion": c, "label": good} for p, c, good in (
        ("2+2=", " 4", True), ("Name a colour:", " no", False), ("Say hi:", " hi there, friend", True),
        ("1+1=", " three, or so I believe", False))]
    losses, grads = [], []
    for trainer_class in (KTOTrainer, PaddingFreeKTOTrainer):
        model = training_model(tokenizer)
        args = KTOConfig(output_dir=str(tmp_path / trainer_class.__name__), per_device_train_batch_size=4,
                         use_cpu=True, report_to=[], precompute_ref_log_probs=precompute, max_length=64)
        reference = None if precompute else copy.deepcopy(model).eval()
        trainer = trainer_class(model=model, ref_model=reference, args=args, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        assert batch["attention_mask"].sum() < batch["attention_mask"].numel()  # the batch has padding
        assert trainer.calculate_KL and "KL_input_ids" in batch
        packed = getattr(model.forward, "_posttrain_padding_free", False)
        assert packed == (trainer_class is PaddingFreeKTOTrainer)
        loss, grad = loss_and_gradient(trainer, model, batch)
        losses.append(loss)
        grads.append(grad)
    assert abs(losses[0] - losses[1]) < 1e-3
    assert torch.allclose(grads[0], grads[1], atol=1e-4)
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("method", ["cpo", "simpo", "orpo"])
def test_padding_free_cpo_simpo_orpo_losses_and_gradients_equal_the_padded_ones(tmp_path, method):
    """TRL's experimental trainers take full logits; scored through the fused LM head on packed rows they give
    the same loss (NLL term included) and gradients."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    from posttrain.methods.padding_free_logits import PaddingFreeCPOTrainer, PaddingFreeORPOTrainer

    classes = {"cpo": (CPOTrainer, PaddingFreeCPOTrainer, CPOConfig, {"loss_type": "sigmoid", "cpo_alpha": 1.0}),
               "simpo": (CPOTrainer, PaddingFreeCPOTrainer, CPOConfig, {"loss_type": "simpo", "cpo_alpha": 0.0}),
               "orpo": (ORPOTrainer, PaddingFreeORPOTrainer, ORPOConfig, {})}
    padded_class, packed_class, config_class, fields = classes[method]
    tokenizer = byte_level_tokenizer(256)
    rows = PAIRS
    losses, grads = [], []
    for trainer_class in (padded_class, packed_class):
        model = training_model(tokenizer)
        args = config_class(output_dir=str(tmp_path / trainer_class.__name__), per_device_train_batch_size=4,
                            use_cpu=True, report_to=[], max_length=64, remove_unused_columns=False, **fields)
        trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer)
        assert getattr(model.forward, "_posttrain_padding_free", False) == (trainer_class is packed_class)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
        loss, grad = loss_and_gradient(trainer, model, batch)
        losses.append(loss)
        grads.append(grad)
    assert abs(losses[0] - losses[1]) < 1e-3
    assert torch.allclose(grads[0], grads[1], atol=1e-4)
    assert grads[0].abs().sum() > 0


def test_a_cpo_or_orpo_model_still_generates_as_before(tmp_path):
    """After CPO/ORPO training the model keeps its fused, packed forward, and a sampling evaluator generates
    with it: only the trainers' fused-head scoring calls are packed, so greedy generation is unchanged."""
    from trl.experimental.orpo import ORPOConfig

    from posttrain.methods.padding_free_logits import PaddingFreeORPOTrainer

    tokenizer = byte_level_tokenizer(256)
    model = tiny_model(seed=3)
    ids, mask, _ = padded_batch("left")
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    args = ORPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to=[],
                      max_length=64, remove_unused_columns=False)
    rows = [{"prompt": "1+1=", "chosen": " two", "rejected": " 3"}] * 2
    PaddingFreeORPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    assert getattr(model.forward, "_posttrain_padding_free", False)
    with torch.no_grad():
        packed = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(plain, packed)


def test_padding_free_sft_logs_what_trl_logs_without_reading_back_each_micro_batch(tmp_path):
    """Two micro-batches then a log: the same loss and gradients, the same token count and the same
    entropy/accuracy/num_tokens metrics as TRL's SFTTrainer, the sums read back only at the log."""
    tokenizer = byte_level_tokenizer(256)
    rows = [{"prompt": p, "completion": c} for p, c in (
        ("2+2=", " 4"), ("Name a colour:", " a deep shade of blue"), ("Say hi:", " hi there"), ("1+1=", " two"),
        ("Count:", " one two three four"), ("Yes or no?", " no"), ("Greet:", " hello world"), ("3+3=", " six"))]
    seen = {}
    for trainer_class in (SFTTrainer, PaddingFreeSFTTrainer):
        model = training_model(tokenizer)
        args = SFTConfig(output_dir=str(tmp_path / trainer_class.__name__), per_device_train_batch_size=4,
                         use_cpu=True, report_to=[], max_length=32, packing=True, packing_strategy="bfd",
                         padding_free=True, include_num_input_tokens_seen="non_padding", logging_steps=1)
        trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                processing_class=tokenizer)
        losses = []
        packed = len(trainer.train_dataset)
        assert packed >= 2
        for indices in (range(0, packed // 2), range(packed // 2, packed)):
            batch = trainer.data_collator([trainer.train_dataset[i] for i in indices])
            assert "position_ids" in batch and "attention_mask" not in batch  # padding-free
            loss = trainer.compute_loss(trainer.model, batch)
            loss.backward()
            trainer._track_num_input_tokens(batch)
            trainer.current_flos += trainer.floating_point_ops(batch)
            losses.append(loss.item())
        if trainer_class is PaddingFreeSFTTrainer:
            assert len(trainer._pending_sums) == 2  # nothing read back yet
        trainer.log({"loss": 0.0})
        seen[trainer_class] = (losses, model.model.layers[0].self_attn.q_proj.weight.grad.clone(),
                               trainer.state.num_input_tokens_seen, trainer.state.log_history[-1],
                               trainer.current_flos)
    (trl_losses, trl_grad, trl_tokens, trl_logs, trl_flos), (losses, grad, tokens, logs, flos) = seen.values()
    assert flos == trl_flos > 0  # the parameter count taken once gives the Trainer's own FLOPs
    assert losses == pytest.approx(trl_losses, abs=1e-6)
    assert torch.allclose(grad, trl_grad, atol=1e-6)
    assert tokens == trl_tokens > 0
    for key in ("entropy", "mean_token_accuracy", "num_tokens"):
        assert logs[key] == pytest.approx(trl_logs[key], abs=1e-6), key
    assert trl_logs["entropy"] > 0 and trl_logs["num_tokens"] == trl_tokens



def fused_head_trainer(method: str, tmp_path, rows: list[dict], **config):
    """posttrain's padding-free CPO or ORPO trainer on the tiny model, CPU, TRL's config fields in `config`."""
    from trl.experimental.cpo import CPOConfig
    from trl.experimental.orpo import ORPOConfig

    from posttrain.methods.padding_free_logits import PaddingFreeCPOTrainer, PaddingFreeORPOTrainer

    trainer_class, config_class = {"cpo": (PaddingFreeCPOTrainer, CPOConfig),
                                   "orpo": (PaddingFreeORPOTrainer, ORPOConfig)}[method]
    args = config_class(output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to=[],
                        max_length=64, remove_unused_columns=False, save_strategy="no", **config)
    return trainer_class(model=tiny_model(), args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=byte_level_tokenizer(256))


@pytest.mark.parametrize("method", ["cpo", "orpo"])
def test_padding_free_cpo_and_orpo_keep_liger_off_the_lm_head(tmp_path, monkeypatch, method):
    """On a GPU Liger is on, and its fused linear cross-entropy would replace the forward these trainers score
    through when training starts (measured: 'LigerCausalLMOutputWithPast' has no attribute 'log_probs'): only
    Liger's other kernels may apply."""
    import transformers.trainer

    applied = []
    monkeypatch.setattr(transformers.trainer, "apply_liger_kernel", lambda model, config: applied.append(config))
    rows = [{"prompt": "1+1=", "chosen": " two", "rejected": " 3"}] * 2
    fused_head_trainer(method, tmp_path, rows, max_steps=1, use_liger_kernel=True,
                       liger_kernel_config={"rms_norm": True}).train()
    assert applied == [{"rms_norm": True, "fused_linear_cross_entropy": False}]


@pytest.mark.parametrize("method", ["cpo", "orpo"])
def test_padding_free_cpo_and_orpo_count_their_real_tokens(tmp_path, method):
    """Their batches hold no input_ids, so transformers counts no tokens (no tokens/s, no MFU): posttrain's
    trainers count every real token of chosen and rejected, read back at each log."""
    rows = [{"prompt": "1+1=", "chosen": " two", "rejected": " 3"}, {"prompt": "2+2=", "chosen": " 4", "rejected": " five!"},
            {"prompt": "3+3=", "chosen": " six", "rejected": " 7"}, {"prompt": "4+4=", "chosen": " 8", "rejected": " nine"}]
    trainer = fused_head_trainer(method, tmp_path, rows, max_steps=2, logging_steps=1,
                                 include_num_input_tokens_seen="non_padding")
    trainer.train()
    data = trainer.train_dataset
    expected = sum(len(ids) for ids in data["chosen_input_ids"]) + sum(len(ids) for ids in data["rejected_input_ids"])
    assert trainer.state.num_input_tokens_seen == expected
    logged = [entry["num_input_tokens_seen"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and 0 < logged[0] < logged[1] == expected
