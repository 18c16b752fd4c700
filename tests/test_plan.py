"""plan=true: the plan of a run from its config alone (meta device, no weights), and the stop before loading a
model that cannot fit the GPU. Measuring peaks is a GPU benchmark's job (benchmarks/guides_full_size.py);
here: the parameter counts are exact, the memory terms add up as documented, the estimate stays within 25%
of the peaks that benchmark measured on an H200, and every model config plans on a CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_posttrain
from hydra import compose, initialize_config_module

import posttrain.compose  # noqa: F401  (registers the config resolvers)
from posttrain.errors import PosttrainError
from posttrain.plan import ASSUMED_PROMPT_TOKENS, GIB, adapter_parameters, check_fits, estimate_memory, make_plan, meta_model

MODELS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "model").glob("*.yaml"))


def composed(*overrides: str):
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["~experiment", *overrides])


@pytest.mark.parametrize("model", MODELS)
def test_every_model_plans_on_a_cpu_without_weights(model):
    cfg = composed(f"model={model}", "hardware=gpu", "plan=true")
    plan, token_flops = make_plan(cfg, with_data=False)
    published = cfg.model.get("published_parameters")
    if published:  # the meta-device model has the published size
        assert abs(plan.parameters - published) / published < 0.01, (plan.parameters, published)
    assert plan.memory.weights == 2 * plan.parameters  # bf16
    assert plan.memory.gradients == 2 * plan.parameters and plan.memory.optimizer == 4 * plan.parameters
    assert plan.memory.total > plan.memory.weights * 4 and token_flops >= 6 * plan.active


def test_lora_counts_the_adapters_peft_would_add():
    from peft import LoraConfig, get_peft_model

    cfg = composed("model=tiny", "lora_rank=8")
    model = meta_model(cfg.model, "causal_lm")
    planned, multiplied, dropped = adapter_parameters(model, LoraConfig(r=8, target_modules="all-linear",
                                                                        lora_dropout=0.05, task_type="CAUSAL_LM"))
    assert multiplied == planned and len(dropped) == 4 * 7  # 4 layers x q, k, v, o, gate, up, down
    import torch

    with torch.device("cpu"):
        real = meta_model(cfg.model, "causal_lm").to_empty(device="cpu")
    peft_model = get_peft_model(real, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert planned == sum(p.numel() for p in peft_model.parameters() if p.requires_grad)


def test_lora_on_a_mixture_of_experts_counts_the_expert_adapters_peft_adds():
    """peft's all-linear also adapts a mixture's fused 3-D expert weights (one adapter per expert): on
    Qwen3-30B-A3B that is 1.99B trainable parameters, not the 27M of its attention layers, and their AdamW
    state is what the plan missed against the H200's measured peak. A token meets only its routed experts'
    adapters, so the FLOPs count those (8 of 128)."""
    from peft import LoraConfig, get_peft_model

    cfg = composed("model=qwen3-30b-a3b", "model.init=random", "lora_rank=8", "model.architecture.num_hidden_layers=2",
                   "model.architecture.hidden_size=64", "model.architecture.moe_intermediate_size=32",
                   "model.architecture.num_attention_heads=4", "model.architecture.num_key_value_heads=2",
                   "model.architecture.head_dim=16", "model.architecture.num_experts=16",
                   "model.architecture.num_experts_per_tok=4")
    lora = LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM")
    planned, multiplied, _ = adapter_parameters(meta_model(cfg.model, "causal_lm"), lora)
    import torch

    with torch.device("cpu"):
        real = meta_model(cfg.model, "causal_lm").to_empty(device="cpu")
    peft_model = get_peft_model(real, lora)
    trainable = {n: p.numel() for n, p in peft_model.named_parameters() if p.requires_grad}
    experts = sum(size for name, size in trainable.items() if ".experts." in name)
    assert planned == sum(trainable.values()) and experts > planned / 2  # the experts' adapters dominate
    assert multiplied == planned - experts + experts * 4 // 16
    plan, _ = make_plan(cfg, with_data=False)
    assert plan.trainable == planned and plan.memory.optimizer == 16 * planned


def test_lora_plan_holds_frozen_weights_and_fp32_adapter_state():
    cfg = composed("model=qwen3-4b", "hardware=gpu", "lora_rank=32", "hardware.micro_batch=4")
    plan, _ = make_plan(cfg, with_data=False)
    assert plan.trainable < plan.parameters / 20
    assert plan.memory.gradients == 0 and plan.memory.optimizer == 16 * plan.trainable


def test_activation_checkpointing_and_liger_shrink_the_estimate():
    shape = {"h": 896, "q": 896, "kv": 128, "i": 4864, "L": 24, "V": 151936}
    plain = estimate_memory(shape, 494_000_000, 0, False, 0.0, 16384, "bf16", False, False, False, [])
    liger = estimate_memory(shape, 494_000_000, 0, False, 0.0, 16384, "bf16", True, False, False, [])
    saved = estimate_memory(shape, 494_000_000, 0, False, 0.0, 16384, "bf16", False, True, False, [])
    assert liger.activations < plain.activations and liger.logits < plain.logits / 3
    assert saved.activations < plain.activations / 5
    # 2 bytes x (4h + 3q + 2kv + 4i) + 8h per token and layer, for 16384 tokens and 24 layers
    assert plain.activations == 16384 * 24 * (2 * (4 * 896 + 3 * 896 + 2 * 128 + 4 * 4864) + 8 * 896)


def test_a_model_that_cannot_fit_stops_with_the_fixes():
    cfg = composed("model=qwen3-30b-a3b", "hardware=gpu", "hardware.micro_batch=1")
    plan, _ = make_plan(cfg, with_data=False)
    with pytest.raises(PosttrainError) as error:
        check_fits(plan)
    assert "GiB per GPU even one row at a time" in error.value.problem
    assert "lora_rank=16" in error.value.fix and "peft=qlora" in error.value.fix
    small, _ = make_plan(composed("model=qwen2.5-0.5b", "hardware=gpu", "hardware.micro_batch=1"), with_data=False)
    check_fits(small)
    assert small.memory.total < 20 * GIB


def test_plan_true_prints_each_stage_and_trains_nothing(workdir):
    result = run_posttrain(["plan=true", "hardware=gpu"], workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plan (1-sft):" in result.stdout and "plan (2-dpo):" in result.stdout
    assert result.stdout.count("peak GPU memory per device") == 2 and "tokens per epoch" in result.stdout
    assert not (workdir / "outputs").exists()


def test_a_command_without_plan_composes_nothing_for_the_plan():
    """Sweep values are not one config: the plan hook must leave a --multirun command line to Hydra."""
    from posttrain.plan import print_plan

    assert print_plan(["learning_rate=1e-3,2e-3", "method=sft"], "train", multirun=True) is False
    with pytest.raises(PosttrainError, match="plan=true plans one run"):
        print_plan(["plan=true", "learning_rate=1e-3,2e-3"], "train", multirun=True)


# Peak allocated GPU memory measured by benchmarks/guides_full_size.py on one H200 (2026-12-03; torch 2.11,
# transformers 5.24, trl 1.16, liger-kernel 0.8.5; random-init models at their published architecture, a
# word-level tokenizer of 151,936 entries, rows filling model.max_length): overrides, micro-batch, GiB.
MEASURED_PEAKS = {
    "sft qwen2.5-0.5b": (["method=sft", "model=qwen2.5-0.5b"], 32, 35.99),
    "dpo qwen2.5-0.5b": (["method=dpo", "model=qwen2.5-0.5b"], 16, 36.92),
    "diversity_dpo qwen3-4b lora": (["experiment=diversity_dpo", "model=qwen3-4b", "dataset=local",
                                     "dataset.path=pairs.jsonl"], 4, 11.59),
    # the second H200 session of 2026-12-03 (raw/guides_b.md): a larger micro-batch, the 8B model
    "dpo qwen2.5-0.5b micro-batch 32": (["method=dpo", "model=qwen2.5-0.5b"], 32, 68.03),
    "diversity_dpo qwen3-4b lora micro-batch 16": (["experiment=diversity_dpo", "model=qwen3-4b", "dataset=local",
                                                    "dataset.path=pairs.jsonl"], 16, 20.3),
    "diversity_dpo qwen3-8b lora": (["experiment=diversity_dpo", "model=qwen3-8b", "dataset=local",
                                     "dataset.path=pairs.jsonl"], 16, 33.53),
    # the fifth H200 session of 2026-12-03 (raw/guides_f.md, guides_g.md, guides_h_nli_after_fix.md): the
    # micro-batch the preset's own batch gets, and QLoRA (Mistral's 32,000-entry vocabulary)
    "diversity_dpo qwen3-4b lora micro-batch 32": (["experiment=diversity_dpo", "model=qwen3-4b", "dataset=local",
                                                    "dataset.path=pairs.jsonl"], 32, 32.51),
    "diversity_dpo qwen3-8b lora micro-batch 32": (["experiment=diversity_dpo", "model=qwen3-8b", "dataset=local",
                                                    "dataset.path=pairs.jsonl"], 32, 51.08),
    "nli_qlora mistral-7b": (["experiment=nli_qlora"], 16, 8.14),
    # Qwen3-30B-A3B with LoRA (peft adapts every expert; Liger stays off on a mixture), gradient checkpointing:
    # the whole model (raw/guides_e.md, steps 2-3; flex attention then) and, on 2026-12-04, its first 4 and 8
    # layers (raw/moe_layers_L4.md, raw/moe_layers_L8.md), which separate the per-layer cost from the rest
    "diversity_dpo qwen3-30b-a3b lora": (["experiment=diversity_dpo", "model=qwen3-30b-a3b", "dataset=local",
                                          "dataset.path=pairs.jsonl", "hardware.liger=false",
                                          "hardware.attention=flex_attention"], 16, 103.24),
    "diversity_dpo qwen3-30b-a3b lora 4 layers": (["experiment=diversity_dpo", "model=qwen3-30b-a3b", "dataset=local",
                                                   "dataset.path=pairs.jsonl", "hardware.liger=false",
                                                   "model.architecture.num_hidden_layers=4"], 16, 19.55),
    "diversity_dpo qwen3-30b-a3b lora 8 layers": (["experiment=diversity_dpo", "model=qwen3-30b-a3b", "dataset=local",
                                                   "dataset.path=pairs.jsonl", "hardware.liger=false",
                                                   "model.architecture.num_hidden_layers=8"], 16, 27.2),
}
# the vocabulary of the tokenizer each case's model was measured with (the vocabulary sizes the head)
VOCABULARY = {"nli_qlora mistral-7b": 32_000}


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory):
    """Word-level tokenizers of a given size, as the benchmark built them: size -> folder."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from guides_full_size import build_tokenizer

    folders = {}

    def folder(size: int) -> Path:
        if size not in folders:
            folders[size] = tmp_path_factory.mktemp(f"tokenizer-{size}")
            build_tokenizer(folders[size], size)
        return folders[size]

    return folder


@pytest.mark.parametrize("case", sorted(MEASURED_PEAKS))
def test_the_estimate_lands_within_25_percent_of_the_measured_peak(case, vocabulary):
    from posttrain.compose import command_overrides

    overrides, micro_batch, measured_gib = MEASURED_PEAKS[case]
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=command_overrides([
            "hardware=gpu", "hardware.liger=true", *overrides, "model.init=random",
            f"model.tokenizer={vocabulary(VOCABULARY.get(case, 151_936))}", f"hardware.micro_batch={micro_batch}"]))
    plan, _ = make_plan(cfg, with_data=False)
    assert abs(plan.memory.total / GIB / measured_gib - 1) < 0.25, (plan.memory, measured_gib)


def test_cpo_plans_full_logits_padded_and_the_fused_head_packed(vocabulary):
    """CPO/ORPO (TRL's experimental trainers) compute full logits whether Liger is on or not; their
    padding-free trainers score through TRL's fused LM head instead (a tile of logits)."""
    from posttrain.compose import command_overrides
    from posttrain.memory import LOGIT_BYTES
    from posttrain.plan import TRL_HEAD_TILE

    for packing in ("true", "false"):
        with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
            cfg = compose(config_name="train", overrides=command_overrides([
                "method=cpo", "model=qwen2.5-0.5b", "model.init=random", f"model.tokenizer={vocabulary(151_936)}",
                "hardware=gpu", "hardware.liger=true", "hardware.micro_batch=8", f"hardware.packing={packing}"]))
        plan, _ = make_plan(cfg, with_data=False)
        tokens = 8 * 2 * int(cfg.model.max_length)
        assert plan.tokens_per_micro_batch == tokens
        if packing == "true":
            tile = min(tokens, TRL_HEAD_TILE[0]) * min(151_936, TRL_HEAD_TILE[1]) * 2
            assert plan.memory.logits == tile + 4 * tokens * 896 + 4 * 151_936 * 896  # full fine-tuning: head gradient
        else:
            assert plan.memory.logits == tokens * 151_936 * LOGIT_BYTES


def test_trls_fused_head_keeps_a_tile_of_logits_and_a_classifier_none():
    shape = {"h": 2560, "q": 4096, "kv": 1024, "i": 9728, "L": 36, "V": 151936}
    args = (shape, 4_000_000_000, 66_000_000, True, 0.0, 8192, "bf16", True, True, False, [])
    fused, liger, none = (estimate_memory(*args, lm_head=head) for head in ("trl_fused", "liger", "none"))
    assert fused.logits == 4096 * 32768 * 2 + 4 * 8192 * 2560  # LoRA: the head's weight has no gradient
    assert liger.logits == 4096 * 151936 * 10 and none.logits == 0


def test_an_online_method_plans_its_prompt_and_sampled_completion_not_max_length():
    """GRPO's rows are a prompt and a sampled completion: planning them at model.max_length overestimated the
    tic-tac-toe GRPO preset's peak 6x on an H200 (141 GiB planned, 22.6 measured)."""
    cfg = composed("model=qwen2.5-0.5b", "hardware=gpu", "method=grpo", "batch_size=16",
                   "method.args.max_completion_length=96")
    plan, _ = make_plan(cfg, with_data=False, prompt_tokens=64)
    assert plan.tokens_per_micro_batch == 16 * (64 + 96)
    assumed, _ = make_plan(cfg, with_data=False)
    assert assumed.tokens_per_micro_batch == 16 * (ASSUMED_PROMPT_TOKENS + 96)
    assert any("sampled completion" in note for note in assumed.notes)
