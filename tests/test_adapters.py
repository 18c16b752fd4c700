"""LoRA settings become peft objects that apply to the model they are meant for (src/posttrain/adapters.py)."""

from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM

from posttrain.adapters import resolve_adapters

PEFT = OmegaConf.create({"name": "lora", "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": "all-linear",
                         "load_in_4bit": False})
TINY_MOE = {"model_type": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 64,
            "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16}


def test_lora_on_a_mixture_of_experts_adapts_the_fused_expert_weights():
    """peft refuses dropout on transformers' fused 3-D expert weights (the Qwen3-30B-A3B run failed so on a
    GPU): a mixture of experts gets lora_dropout=0 and its experts train."""
    from peft import get_peft_model

    model_cfg = OmegaConf.create({"architecture": TINY_MOE})
    adapters = resolve_adapters(PEFT, 4, "causal_lm", model_cfg)
    assert adapters.lora.lora_dropout == 0.0
    architecture = dict(TINY_MOE)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(architecture.pop("model_type"), **architecture))
    peft_model = get_peft_model(model, adapters.lora)
    trained = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert any(".experts." in name for name in trained), trained
    assert any("q_proj.lora_A" in name for name in trained), trained


def test_a_dense_model_keeps_its_lora_dropout():
    dense = OmegaConf.create({"architecture": {k: v for k, v in TINY_MOE.items() if "expert" not in k}})
    assert resolve_adapters(PEFT, 4, "causal_lm", dense).lora.lora_dropout == 0.05
    assert resolve_adapters(PEFT, 0, "causal_lm", dense).lora is None
