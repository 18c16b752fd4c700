"""models/expert_lora.py: LoRA on a mixture of experts through grouped rank-r products gives peft's own
outputs and gradients, keeps peft's adapters (saving, disabling, merging), and leaves other models alone."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from posttrain.models import expert_lora


def mixture(seed: int = 0):
    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        "qwen3_moe", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, vocab_size=97, num_experts=8, num_experts_per_tok=2,
        moe_intermediate_size=32)
    model = AutoModelForCausalLM.from_config(config)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, p in model.named_parameters():  # LoRA's B starts at zero: give the adapters something to do
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def loss_and_grads(model, ids):
    model.zero_grad()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach(), out.loss.item(), grads


def test_grouped_products_give_peft_outputs_and_gradients():
    peft_model = mixture()
    grouped = copy.deepcopy(peft_model)
    assert expert_lora.install(grouped) == 2  # one experts stack per layer
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(1))
    logits, loss, grads = loss_and_grads(peft_model, ids)
    logits_g, loss_g, grads_g = loss_and_grads(grouped, ids)
    assert torch.allclose(logits, logits_g, atol=1e-5)
    assert loss == pytest.approx(loss_g, abs=1e-6)
    expert_grads = [n for n in grads if ".experts." in n and "lora_" in n]
    assert len(expert_grads) == 8  # A and B of gate_up_proj and down_proj, two layers
    for name, grad in grads.items():
        assert torch.allclose(grad, grads_g[name], atol=1e-5), name
    assert all(grads_g[n].abs().sum() > 0 for n in expert_grads)


def test_disabled_and_merged_adapters_take_peft_path():
    model = mixture()
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), model.disable_adapter():
        base = model(input_ids=ids).logits
        expert_lora.install(model)
        base_grouped = model(input_ids=ids).logits
    assert torch.allclose(base, base_grouped, atol=1e-6)
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        assert not torch.allclose(adapted, base, atol=1e-3)  # the adapters are on again, through grouped products
        merged = model.merge_and_unload()(input_ids=ids).logits
    assert torch.allclose(adapted, merged, atol=1e-4)


def test_a_dense_model_is_left_alone():
    config = AutoConfig.for_model("qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, vocab_size=50)
    model = get_peft_model(AutoModelForCausalLM.from_config(config), LoraConfig(r=2, target_modules="all-linear"))
    assert expert_lora.install(model) == 0
