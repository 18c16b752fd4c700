"""src/posttrain/models/attention.py: hardware.attention=varlen gives a packed row the outputs each example has
alone (from the collator's cu_seq_lens or from position_ids only), runs a padded batch and cached generation
as SDPA does, and saves a model that loads anywhere. On a CPU its packed path runs SDPA per example; the GPU
kernel (torch's FlashAttention-2 varlen) is measured in benchmarks/gpu_throughput.py."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

import posttrain.compose  # noqa: F401  (registers the config resolvers)
from posttrain.models import attention
from posttrain.models.loading import load_model, load_tokenizer, load_trained

# a Qwen2 layout with grouped-query attention (4 query heads share 2 key/value heads), small enough for a CPU
QWEN2_SMALL = ["model=qwen2.5-0.5b", "model.init=random", "model.tokenizer=byte", "model.architecture.num_hidden_layers=2",
               "model.architecture.hidden_size=64", "model.architecture.intermediate_size=128",
               "model.architecture.num_attention_heads=4", "model.architecture.num_key_value_heads=2",
               "model.architecture.head_dim=16"]
LENGTHS = (23, 5, 40)


def model_pair():
    """The same random weights as an sdpa model and a varlen model, in float32, eval mode."""
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        model_cfg = compose(config_name="train", overrides=QWEN2_SMALL).model
    tokenizer = load_tokenizer(model_cfg)
    torch.manual_seed(0)
    sdpa = load_model(model_cfg, tokenizer, torch.float32, attention="sdpa").eval()
    torch.manual_seed(0)
    varlen = load_model(model_cfg, tokenizer, torch.float32, attention="varlen").eval()
    assert varlen.config._attn_implementation == "varlen"
    return sdpa, varlen, tokenizer


@pytest.fixture(scope="module")
def models():
    return model_pair()


def examples():
    generator = torch.Generator().manual_seed(3)
    return [torch.randint(3, 250, (n,), generator=generator) for n in LENGTHS]


def alone(model, rows) -> torch.Tensor:
    """Each example's logits computed on its own, concatenated."""
    with torch.no_grad():
        return torch.cat([model(input_ids=row[None], use_cache=False).logits[0] for row in rows])


def packed_inputs(rows, with_bounds: bool) -> dict:
    inputs = {"input_ids": torch.cat(rows)[None], "position_ids": torch.cat([torch.arange(len(r)) for r in rows])[None]}
    if with_bounds:
        cu = torch.tensor([0, *torch.tensor(LENGTHS).cumsum(0).tolist()], dtype=torch.int32)
        inputs.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(LENGTHS), max_length_k=max(LENGTHS))
    return inputs


@pytest.mark.parametrize("with_bounds", [True, False], ids=["cu_seq_lens", "position_ids_only"])
def test_a_packed_row_gives_each_example_its_own_outputs(models, with_bounds, monkeypatch):
    sdpa, varlen, _ = models
    calls = []
    original = attention._per_example
    monkeypatch.setattr(attention, "_per_example", lambda *a: calls.append(a[3].tolist()) or original(*a))
    rows = examples()
    with torch.no_grad():
        packed = varlen(**packed_inputs(rows, with_bounds), use_cache=False).logits[0]
    assert calls and calls[0] == [0, 23, 28, 68]  # the packed path ran, once per layer, with the examples' bounds
    assert torch.allclose(packed, alone(sdpa, rows), atol=1e-4)
    # the same packed row through plain causal attention would mix examples: the test can tell
    with torch.no_grad():
        mixed = sdpa(input_ids=torch.cat(rows)[None], use_cache=False).logits[0]
    assert not torch.allclose(mixed, alone(sdpa, rows), atol=1e-2)


def test_a_padded_batch_matches_sdpa(models):
    sdpa, varlen, _ = models
    rows = examples()
    width = max(LENGTHS)
    ids = torch.stack([torch.cat([r, r.new_zeros(width - len(r))]) for r in rows])
    mask = torch.stack([torch.arange(width) < len(r) for r in rows]).long()
    with torch.no_grad():
        ours, theirs = (m(input_ids=ids, attention_mask=mask, use_cache=False).logits for m in (varlen, sdpa))
    keep = mask.bool()
    assert torch.allclose(ours[keep], theirs[keep], atol=1e-4)


def test_generation_with_a_cache_and_left_padding_matches_sdpa(models):
    sdpa, varlen, tokenizer = models
    tokenizer.padding_side = "left"
    batch = tokenizer(["X to play\n1|2|3", "O to"], return_tensors="pt", padding=True)
    outputs = [m.generate(**batch, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
               for m in (varlen, sdpa)]
    assert torch.equal(outputs[0], outputs[1])
    with torch.no_grad():  # the scores, not only the argmax, agree
        scores = [m(**batch, use_cache=False).logits for m in (varlen, sdpa)]
    keep = batch["attention_mask"].bool()
    assert torch.allclose(scores[0][keep], scores[1][keep], atol=1e-4)


@pytest.mark.parametrize("prompts", [["X to play\n1|2|3", "O to"], ["X to", "O to"]], ids=["left_padded", "no_padding"])
def test_generation_with_a_static_cache_matches_sdpa(models, prompts):
    """A static cache (hardware.compile_generation's) holds more slots than tokens seen: the empty ones are
    masked whether the batch has padding (a 2-D mask shorter than the cache) or none (no mask at all)."""
    sdpa, varlen, tokenizer = models
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    outputs = [m.generate(**batch, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                          cache_implementation=cache, output_logits=True, return_dict_in_generate=True)
               for m, cache in ((varlen, "static"), (sdpa, "dynamic"))]
    assert torch.equal(outputs[0].sequences, outputs[1].sequences)
    for ours, theirs in zip(outputs[0].logits, outputs[1].logits):
        assert torch.allclose(ours, theirs, atol=1e-4)


def test_a_model_trained_with_varlen_saves_and_loads_in_a_fresh_registry(models, tmp_path):
    _, varlen, tokenizer = models
    varlen.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model, _ = load_trained(str(tmp_path))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, varlen(input_ids=ids).logits, atol=1e-5)


@pytest.mark.skipif(not attention.kernel_available(), reason="needs torch's varlen kernel and a CUDA GPU (sm80+)")
def test_the_gpu_kernel_equals_sdpa_per_example():
    """torch's FlashAttention-2 varlen kernel (through this torch's signature) against SDPA run one example at a
    time, bf16, grouped-query heads, forward and gradients."""
    torch.manual_seed(0)
    cu = torch.tensor([0, 300, 301, 1000, 1024], dtype=torch.int32, device="cuda")
    q, k, v = (torch.randn(1024, heads, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for heads in (14, 2, 2))
    fast = attention._varlen_kernel(q, k, v, cu, cu, 699, 699, None, True)
    grads_fast = torch.autograd.grad(fast.float().square().sum(), (q, k, v))
    slow = attention._per_example(q, k, v, cu, None, True)
    grads_slow = torch.autograd.grad(slow.float().square().sum(), (q, k, v))
    assert (fast - slow).abs().max() < 2e-2
    for ours, theirs in zip(grads_fast, grads_slow):
        assert (ours - theirs).abs().max() / theirs.abs().max() < 2e-2
