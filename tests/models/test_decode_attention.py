"""src/posttrain/models/decode_attention.py: the grouped decode step computes what transformers' SDPA attention
computes (the same logits, greedy and sampled, through a dynamic and a static cache with left padding) and
runs SDPA's grouped-query attention on the cache's key/value heads as they are. Its speed under torch.compile on a GPU is measured in
benchmarks/decode_attention.py."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

import posttrain.compose  # noqa: F401  (registers the config resolvers)
from posttrain.models import decode_attention
from posttrain.models.loading import load_model, load_tokenizer

# a Qwen2 layout with grouped-query attention: 8 query heads share 2 key/value heads
GROUPED = ["model=qwen2.5-0.5b", "model.init=random", "model.tokenizer=byte", "model.architecture.num_hidden_layers=2",
           "model.architecture.hidden_size=64", "model.architecture.intermediate_size=128",
           "model.architecture.num_attention_heads=8", "model.architecture.num_key_value_heads=2",
           "model.architecture.head_dim=8"]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        model_cfg = compose(config_name="train", overrides=GROUPED).model
    tokenizer = load_tokenizer(model_cfg)
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    return load_model(model_cfg, tokenizer, torch.float32, attention="sdpa").eval(), tokenizer


def sample(model, tokenizer, cache: str):
    batch = tokenizer(["X to play\n1|2|3", "O to", "4|5|6\n7|8"], return_tensors="pt", padding=True)
    torch.manual_seed(1)
    return model.generate(**batch, max_new_tokens=10, min_new_tokens=10, do_sample=True, temperature=0.7,
                          cache_implementation=cache, pad_token_id=tokenizer.pad_token_id,
                          output_logits=True, return_dict_in_generate=True)


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_grouped_decode_steps_compute_what_sdpa_computes(model_and_tokenizer, cache, monkeypatch):
    model, tokenizer = model_and_tokenizer
    model.set_attn_implementation("sdpa")
    theirs = sample(model, tokenizer, cache)
    assert decode_attention.use_grouped_decode_attention(model)
    assert model.config._attn_implementation == decode_attention.NAME
    queries = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(decode_attention.F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: queries.append((q.shape, k.shape, kw)) or sdpa(q, k, v, **kw))
    ours = sample(model, tokenizer, cache)
    model.set_attn_implementation("sdpa")
    # the prefill of both layers is transformers' SDPA on repeated heads; every decode step of both layers ran
    # as grouped-query attention: 8 query heads of one token against the cache's 2 key/value heads
    prefill, decode = queries[:2], queries[2:]
    assert all(q[:2] == (3, 8) and q[2] > 1 for q, _, _ in prefill)
    assert len(decode) == 2 * 9
    assert all(q == (3, 8, 1, 8) and k[:2] == (3, 2) and kw["enable_gqa"] for q, k, kw in decode)
    assert torch.equal(ours.sequences, theirs.sequences)
    for step_ours, step_theirs in zip(ours.logits, theirs.logits):
        assert torch.allclose(step_ours, step_theirs, atol=1e-5)


def test_a_model_that_does_not_attend_with_sdpa_is_left_alone(model_and_tokenizer):
    model, _ = model_and_tokenizer
    model.set_attn_implementation("eager")
    assert not decode_attention.use_grouped_decode_attention(model)
    assert model.config._attn_implementation == "eager"
    model.set_attn_implementation("sdpa")
