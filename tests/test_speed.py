"""Speed figures: model FLOPs per token (full fine-tuning, LoRA, a reference forward), the GPU peak table,
the MFU arithmetic, and a metrics log that on a CPU writes no MFU or memory figure."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

from posttrain.run import callbacks
from posttrain.run.callbacks import MetricsLog
from posttrain.speed import (
    GpuSpeed,
    flops_per_token,
    gpu_peak_flops,
    forward_passes,
    mfu_percent,
    multiplied_parameters,
    sampling_forward_passes,
    trainable_parameters,
    training_passes,
    uses_reference_forward,
)

# Qwen2.5-0.5B: 494,032,768 parameters with the output head tied to the embeddings; 24 layers of 14 query
# heads of width 64; sequences of up to 1024 tokens
N, LAYERS, HEADS, HEAD_DIM, T = 494_032_768, 24, 14, 64, 1024
ATTENTION_FORWARD = 4 * LAYERS * HEADS * HEAD_DIM * T  # 88,080,384


def test_full_fine_tuning_is_6n_plus_the_attention_term():
    assert flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T) == 6 * N + 12 * LAYERS * HEADS * HEAD_DIM * T
    assert flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T) == 3_228_437_760


def test_lora_skips_the_base_weight_gradients():
    adapters = 8_798_208
    lora = flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T, adapter_parameters=adapters)
    assert lora == 4 * N + 6 * adapters + 3 * ATTENTION_FORWARD
    assert lora < flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T)


def test_a_reference_forward_adds_a_forward_pass():
    full = flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T)
    assert flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T, forward_passes=1) == full + 2 * N + ATTENTION_FORWARD


def test_online_methods_count_sampling_and_the_old_log_probs_as_forward_passes():
    # GRPO: generation; with 4 optimizer steps per generate call (posttrain's GPU default) TRL also scores the
    # sampled tokens under the sampling policy; aligned (TRL's default, steps_per_generation = accumulation) not
    assert sampling_forward_passes("grpo", accumulation=1, steps_per_generation=4) == 2
    assert sampling_forward_passes("grpo", accumulation=4, steps_per_generation=4) == 1
    assert sampling_forward_passes("grpo", accumulation=4) == 1
    assert sampling_forward_passes("grpo", accumulation=4, num_iterations=2) == 2
    assert sampling_forward_passes("grpo", accumulation=4, importance_sampling=True) == 2
    assert sampling_forward_passes("rloo", accumulation=4) == 2  # RLOO always scores them
    assert sampling_forward_passes("dpo", accumulation=1) == 0
    grpo = SimpleNamespace(gradient_accumulation_steps=1, steps_per_generation=4, num_iterations=1, beta=0.04)
    assert forward_passes("grpo", grpo) == 3  # and the KL penalty's reference forward
    assert forward_passes("dpo", SimpleNamespace(precompute_ref_log_probs=False)) == 1
    assert forward_passes("sft", SimpleNamespace()) == 0


def test_online_methods_count_a_token_once_and_train_on_it_num_iterations_times():
    once = flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T, forward_passes=1)
    twice = flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T, forward_passes=1, training_passes=2)
    assert twice - once == 6 * N + 3 * ATTENTION_FORWARD
    assert training_passes("grpo", SimpleNamespace(num_iterations=2)) == 2
    assert training_passes("rloo", SimpleNamespace(num_iterations=3)) == 3
    assert training_passes("dpo", SimpleNamespace(num_iterations=2)) == 1  # not an online method's field


def test_which_methods_run_a_reference_forward():
    assert uses_reference_forward("dpo", SimpleNamespace(precompute_ref_log_probs=False))
    assert not uses_reference_forward("dpo", SimpleNamespace(precompute_ref_log_probs=True))
    assert uses_reference_forward("kto", None)
    assert not uses_reference_forward("grpo", SimpleNamespace(beta=0.0))
    assert uses_reference_forward("grpo", SimpleNamespace(beta=0.04))
    assert not uses_reference_forward("sft", SimpleNamespace())
    assert not uses_reference_forward("simpo", SimpleNamespace())


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA GH200 480GB", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA A10G", 125e12),
        ("NVIDIA A10", 125e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L40", 181e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA GeForce RTX 4090", 165e12),
        ("Tesla T4", None),
        ("cpu", None),
    ],
)
def test_gpu_names_match_their_dense_bf16_peak(name, peak):
    assert gpu_peak_flops(name) == peak


def test_mfu_is_model_flops_over_the_gpus_peak():
    # the best hand-tuned TRL run: 97,300 tokens/s at 6N on one H100/H200 is 29.2%
    assert mfu_percent(97_300, 6 * N, 989e12) == pytest.approx(29.16, abs=0.01)
    # tokens/s counts every process's tokens: two GPUs halve the share of the same rate
    assert mfu_percent(97_300, 6 * N, 989e12, gpus=2) == pytest.approx(29.16 / 2, abs=0.01)


def small_llama(tied: bool) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


def test_the_input_embedding_counts_only_as_the_tied_output_head():
    tied, untied = small_llama(tied=True), small_llama(tied=False)
    assert multiplied_parameters(tied) == tied.num_parameters()
    assert multiplied_parameters(untied) == untied.num_parameters() - 300 * 32


def test_a_mixture_of_experts_counts_the_routed_experts_only():
    config = Qwen3MoeConfig(vocab_size=300, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                            num_experts=8, num_experts_per_tok=2, tie_word_embeddings=True)
    model = Qwen3MoeForCausalLM(config)
    experts = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    assert experts == 2 * 8 * 3 * 32 * 16
    assert multiplied_parameters(model) == model.num_parameters() - experts + experts // 4


def test_lora_counts_the_adapters_as_the_trainable_weights():
    from peft import LoraConfig, get_peft_model

    base = small_llama(tied=True)
    speed = GpuSpeed(method="sft", parameters=multiplied_parameters(base), layers=2, heads=4, head_dim=8,
                     seq_len=64, lora=True, peak_flops=989e12)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    adapters = trainable_parameters(model)
    assert 0 < adapters == model.get_nb_trainable_parameters()[0]
    speed.start(SimpleNamespace(world_size=1), model)
    assert speed.token_flops == flops_per_token(speed.parameters, 2, 4, 8, 64, adapter_parameters=adapters)


class FakeRunDir:
    def __init__(self):
        self.records = []

    def log_metrics(self, record):
        self.records.append(record)


def log_two_windows(callback: MetricsLog) -> list[dict]:
    run_dir = callback.run_dir
    state = SimpleNamespace(num_input_tokens_seen=0, global_step=0, epoch=0.0, max_steps=10)
    args = SimpleNamespace(world_size=1, precompute_ref_log_probs=False)
    callback.on_train_begin(args, state, None, model=None)
    for step in (5, 10):
        time.sleep(0.01)
        state.num_input_tokens_seen, state.global_step = 1000 * step, step
        callback.on_log(args, state, None, logs={"loss": 1.5, "num_input_tokens_seen": state.num_input_tokens_seen})
    return run_dir.records


def test_on_a_cpu_the_metrics_log_writes_no_mfu_or_memory_figure():
    callback = MetricsLog(FakeRunDir())  # train.py passes no GpuSpeed on a CPU
    for record in log_two_windows(callback):
        assert "tokens_per_second" in record
        assert "mfu_percent" not in record and "peak_memory_gib" not in record
    assert set(callback.averages()) == {"tokens_per_second"}


def test_on_a_known_gpu_every_line_and_the_averages_carry_mfu_and_peak_memory(monkeypatch):
    monkeypatch.setattr(callbacks, "peak_memory_gib", lambda: 12.5)
    speed = GpuSpeed(method="dpo", parameters=N, layers=LAYERS, heads=HEADS, head_dim=HEAD_DIM, seq_len=T,
                     lora=False, peak_flops=989e12)
    callback = MetricsLog(FakeRunDir(), gpu=speed)
    records = log_two_windows(callback)
    assert speed.token_flops == flops_per_token(N, LAYERS, HEADS, HEAD_DIM, T, forward_passes=1)
    for record in records:
        assert record["peak_memory_gib"] == 12.5
        assert record["mfu_percent"] == pytest.approx(
            mfu_percent(record["tokens_per_second"], speed.token_flops, 989e12), rel=1e-3)
    averages = callback.averages()
    assert averages["peak_memory_gib"] == 12.5
    assert min(r["tokens_per_second"] for r in records) <= averages["tokens_per_second"]
    assert averages["tokens_per_second"] <= max(r["tokens_per_second"] for r in records)
    assert averages["mfu_percent"] == pytest.approx(
        mfu_percent(averages["tokens_per_second"], speed.token_flops, 989e12), rel=1e-3)


def test_an_unknown_gpu_logs_memory_but_no_mfu(monkeypatch):
    monkeypatch.setattr(callbacks, "peak_memory_gib", lambda: 3.0)
    speed = GpuSpeed(method="sft", parameters=N, layers=LAYERS, heads=HEADS, head_dim=HEAD_DIM, seq_len=T,
                     lora=False, peak_flops=gpu_peak_flops("Tesla T4"))
    callback = MetricsLog(FakeRunDir(), gpu=speed)
    for record in log_two_windows(callback):
        assert "mfu_percent" not in record and record["peak_memory_gib"] == 3.0
    assert set(callback.averages()) == {"tokens_per_second", "peak_memory_gib"}
