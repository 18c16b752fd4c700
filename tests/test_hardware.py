"""conf/hardware/ and src/posttrain/hardware.py: auto keeps CPU runs as they were, a (faked) GPU gets the
fast settings with the user's effective batch kept, overrides win, and padding-free batches give the same
loss as padded ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from posttrain import hardware as hw
from posttrain.errors import PosttrainError
from posttrain.hardware import resolve_hardware
from conftest import read_jsonl, run_posttrain

CONF = str(Path(__file__).resolve().parents[1] / "conf")
GiB = 2**30


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose("train", overrides=["experiment=tictactoe_sft", *overrides])


def resolve(cfg, method: str = "sft", lora: bool = False):
    return resolve_hardware(cfg.hardware, method=method, model_cfg=cfg.model, batch_size=int(cfg.batch_size),
                            accumulation=int(cfg.training.gradient_accumulation_steps), lora=lora)


@pytest.fixture
def fake_h200(monkeypatch):
    """A CUDA machine with one H200 (140 GiB free), liger-kernel installed, flash-attn not, torch's varlen kernel there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(hw, "gpu_free_bytes", lambda: 140 * GiB)
    monkeypatch.setattr(hw, "installed", lambda package: package == "liger_kernel")
    monkeypatch.setattr(hw, "varlen_kernel_available", lambda: True)


@pytest.mark.parametrize("group", ["auto", "cpu"])
def test_auto_on_a_cpu_resolves_to_todays_settings(group, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for method in ("sft", "dpo", "grpo"):
        chosen = resolve(composed(f"hardware={group}", f"method={method}"), method)
        assert chosen.training_arguments() == {"use_cpu": True, "bf16": False, "fp16": False}
        assert chosen.method_arguments(method) == {}
        assert chosen.attention is None and chosen.micro_batch is None


def test_cpu_and_gpu_extend_auto_through_the_defaults_list():
    auto, cpu, gpu = (composed(f"hardware={g}").hardware for g in ("auto", "cpu", "gpu"))
    assert set(auto) == set(cpu) == set(gpu)
    assert (cpu.device, cpu.precision, gpu.device, gpu.precision) == ("cpu", "fp32", "cuda", "bf16")
    assert gpu.attention == cpu.attention == "auto"


def test_sft_on_a_gpu_gets_liger_packing_varlen_attention_and_a_micro_batch_keeping_the_effective_batch(fake_h200):
    cfg = composed("hardware=gpu", "model=qwen2.5-0.5b", "model.init=random", "batch_size=32")
    chosen = resolve(cfg)
    args = chosen.training_arguments()
    assert args["use_liger_kernel"] and args["optim"] == "adamw_torch_fused" and args["bf16"]
    assert chosen.attention == "varlen"  # flash-attn missing: torch's own varlen kernel
    assert chosen.method_arguments("sft") == {"packing": True, "packing_strategy": "bfd", "padding_free": True}
    assert args["per_device_train_batch_size"] * args["gradient_accumulation_steps"] == 32
    assert args["per_device_train_batch_size"] == 32  # 32 rows of 1024 tokens fit an H200
    assert "torch_compile" not in args
    assert "hardware: cuda (bf16)" in chosen.summary() and "attention=varlen" in chosen.summary()


def test_a_small_gpu_gets_a_smaller_micro_batch_and_more_accumulation(fake_h200, monkeypatch):
    monkeypatch.setattr(hw, "gpu_free_bytes", lambda: 24 * GiB)
    cfg = composed("hardware=gpu", "model=qwen2.5-0.5b", "model.init=random", "batch_size=32",
                   "training.gradient_accumulation_steps=2")
    args = resolve(cfg).training_arguments()
    assert args["per_device_train_batch_size"] < 32
    assert args["per_device_train_batch_size"] * args["gradient_accumulation_steps"] == 64


def test_flash_attention_is_chosen_when_installed(fake_h200, monkeypatch):
    monkeypatch.setattr(hw, "installed", lambda package: True)
    assert resolve(composed("hardware=gpu")).attention == "flash_attention_2"


def test_packed_rows_get_flex_attention_when_torch_has_no_varlen_kernel(fake_h200, monkeypatch):
    monkeypatch.setattr(hw, "varlen_kernel_available", lambda: False)
    chosen = resolve(composed("hardware=gpu"))
    assert chosen.attention == "flex_attention" and "no varlen kernel" in chosen.reasons["attention"]


def test_preference_methods_on_a_gpu_run_padding_free_and_dpo_precomputes_its_reference(fake_h200):
    from posttrain.registry import get_method

    chosen = resolve(composed("hardware=gpu", "method=dpo", "model=qwen2.5-0.5b", "model.init=random"), "dpo")
    assert chosen.attention == "varlen" and chosen.packing
    assert chosen.method_arguments("dpo") == {"precompute_ref_log_probs": True}  # TRL's own padding_free stays off
    assert get_method("dpo").trl_classes(padding_free=True)[0].__name__ == "PaddingFreeDPOTrainer"
    assert get_method("dpo").trl_classes()[0].__name__ == "DPOTrainer"
    kto = resolve(composed("hardware=gpu", "method=kto"), "kto")
    assert kto.packing and kto.attention == "varlen"
    assert get_method("kto").trl_classes(padding_free=True)[0].__name__ == "PaddingFreeKTOTrainer"
    for method, trainer in (("cpo", "PaddingFreeCPOTrainer"), ("simpo", "PaddingFreeCPOTrainer"),
                            ("orpo", "PaddingFreeORPOTrainer")):
        chosen = resolve(composed("hardware=gpu", f"method={method}"), method)
        assert chosen.packing and chosen.attention == "varlen"
        assert get_method(method).trl_classes(padding_free=True)[0].__name__ == trainer
    reward = resolve(composed("hardware=gpu", "method=reward"), "reward")
    assert not reward.packing and reward.attention == "sdpa"  # no padding-free reward trainer: padded batches
    lora = resolve(composed("hardware=gpu", "method=dpo", "lora_rank=16"), "dpo", lora=True)
    assert lora.method_arguments("dpo") == {}  # the adapter-disabled base is the reference


def test_online_methods_keep_their_batch(fake_h200):
    chosen = resolve(composed("hardware=gpu", "method=grpo"), "grpo")
    assert chosen.micro_batch is None and "per_device_train_batch_size" not in chosen.training_arguments()


def test_a_gpu_run_collates_batches_in_worker_processes(fake_h200, tmp_path):
    """Measured on one H200 (benchmarks/results/raw/dataloader_workers.md): SFT 119,015 -> 124,369 tokens/s."""
    from trl import SFTConfig

    chosen = resolve(composed("hardware=gpu"))
    args = chosen.training_arguments()
    assert (args["dataloader_num_workers"], args["dataloader_persistent_workers"], args["dataloader_prefetch_factor"]) \
        == (hw.DATALOADER_WORKERS, True, hw.DATALOADER_PREFETCH)
    config = SFTConfig(output_dir=str(tmp_path), **{**args, "bf16": False, "use_cpu": True, "use_liger_kernel": False})
    assert config.dataloader_num_workers == hw.DATALOADER_WORKERS
    assert "dataloader_workers=2 (batches collate beside training" in chosen.summary()
    assert "dataloader_num_workers" not in resolve(composed("hardware=gpu", "hardware.dataloader_workers=0")).training_arguments()
    assert resolve(composed("hardware=gpu", "method=grpo"), "grpo").dataloader_workers == 0  # sampling dominates
    assert resolve(composed("hardware=cpu", "hardware.dataloader_workers=3")).training_arguments()["dataloader_num_workers"] == 3


@pytest.mark.slow  # two short training runs
def test_worker_processes_collate_the_same_batches(tmp_path):
    """Batches collated in forked worker processes train exactly as batches collated by the training process."""
    losses = {}
    for workers in (0, 2):
        run = ["method=dpo", "max_steps=3", "training.logging_steps=1", "training.save_steps=0", "eval=none",
               "logger=none", "dataset.eval_fraction=0.01", f"hardware.dataloader_workers={workers}", f"run_name=w{workers}"]
        result = run_posttrain(run, tmp_path, env={"HF_HUB_OFFLINE": "1"})
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = read_jsonl(next(tmp_path.glob(f"outputs/**/w{workers}/metrics.jsonl")))
        losses[workers] = [row["loss"] for row in metrics if "loss" in row]
    assert len(losses[0]) == 3 and losses[2] == losses[0]


def test_online_rl_on_a_gpu_samples_several_steps_at_once_without_liger(fake_h200, tmp_path):
    """Measured on one H200 (benchmarks/results/gpu_throughput_grpo.md): Liger slowed GRPO's sampling, and one
    generate call for 4 steps raised samples/s 3.5x; the fields build TRL's GRPO and RLOO configs."""
    from trl import GRPOConfig, RLOOConfig

    for method, config_class in (("grpo", GRPOConfig), ("rloo", RLOOConfig)):
        chosen = resolve(composed("hardware=gpu", f"method={method}", "batch_size=128"), method)
        assert not chosen.liger and chosen.rollout_steps == hw.ROLLOUT_STEPS == 4
        fields = {**chosen.training_arguments(), **chosen.method_arguments(method), "bf16": False, "use_cpu": True}
        config = config_class(output_dir=str(tmp_path), per_device_train_batch_size=8, num_generations=8, **fields)
        assert config.steps_per_generation == hw.ROLLOUT_STEPS
        # decoding with a compiled static cache: 1.5x (tic-tac-toe) and 2.1x (MiniMind) GRPO tokens/s on one H100
        assert chosen.compile_generation and config.cache_implementation == "static"
        assert config.pad_to_multiple_of is None  # prompts are padded inside generate only (methods/build.py)
    # smaller batches sample more steps a call, up to 512 completions (MiniMind's 64 rows: 8 steps, 19.1% -> 21.6%
    # MFU measured on one H200), at most 8 steps off-policy (the tic-tac-toe showcase on CPU still learns with 8:
    # 55.4% -> 61.3% optimal moves, against 62.6% with 4 and 63.5% with TRL's one)
    steps = {batch: resolve(composed("hardware=gpu", "method=grpo", f"batch_size={batch}"), "grpo").rollout_steps
             for batch in (256, 128, 100, 64, 8)}
    assert steps == {256: 4, 128: 4, 100: 6, 64: 8, 8: 8}
    online_dpo = resolve(composed("hardware=gpu", "method=online_dpo"), "online_dpo")
    assert online_dpo.rollout_steps is None and "steps_per_generation" not in online_dpo.method_arguments("online_dpo")
    assert resolve(composed("hardware=gpu", "method=grpo", "hardware.rollout_steps=2"), "grpo").rollout_steps == 2
    assert resolve(composed("hardware=cpu", "method=grpo"), "grpo").rollout_steps is None
    assert not resolve(composed("hardware=cpu", "method=grpo"), "grpo").compile_generation
    assert not online_dpo.compile_generation and not resolve(composed("hardware=gpu")).compile_generation
    with pytest.raises(PosttrainError, match="compile_generation=true applies to grpo and rloo only, not sft"):
        resolve(composed("hardware=gpu", "hardware.compile_generation=true"))
    # another sampling engine (vLLM, transformers' paged or continuous batching) has no generate to compile
    vllm = composed("hardware=gpu", "method=grpo", "+method.args.use_vllm=true")
    chosen = resolve_hardware(vllm.hardware, "grpo", vllm.model, 8, 1, method_args=vllm.method.args)
    assert not chosen.compile_generation and chosen.reasons["compile_generation"] == "method.args.use_vllm samples"
    explicit = composed("hardware=gpu", "method=grpo", "+method.args.use_vllm=true", "hardware.compile_generation=true")
    with pytest.raises(PosttrainError, match="compiles transformers' generate, which method.args.use_vllm replaces"):
        resolve_hardware(explicit.hardware, "grpo", explicit.model, 8, 1, method_args=explicit.method.args)


def test_overrides_win(fake_h200):
    cfg = composed("hardware=gpu", "hardware.attention=sdpa", "hardware.liger=false", "hardware.packing=false",
                   "hardware.fused_optimizer=false", "hardware.compile=true", "hardware.micro_batch=8",
                   "batch_size=32")
    chosen = resolve(cfg)
    args = chosen.training_arguments()
    assert chosen.attention == "sdpa" and not chosen.liger and not chosen.packing
    assert "use_liger_kernel" not in args and "optim" not in args and args["torch_compile"]
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (8, 4)
    assert chosen.method_arguments("sft") == {}
    assert chosen.record()["reasons"]["attention"] == "set"


def test_a_bad_knob_value_reads_as_one_line():
    from posttrain.errors import PosttrainError

    with pytest.raises(PosttrainError, match="hardware.liger must be auto, true or false"):
        resolve(composed("hardware.liger=maybe"))
    with pytest.raises(PosttrainError, match="hardware.attention must be auto or one of"):
        resolve(composed("hardware.attention=fast"))


@pytest.mark.parametrize("attention", ["sdpa", "eager", "varlen"])
def test_padding_free_loss_equals_the_padded_loss(attention):
    """TRL's padding-free collator (what hardware.packing uses) against its padded one, same examples, same
    tiny model: position_ids restart per example (and cu_seq_lens mark the examples for varlen), so attention
    stays within each example."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from posttrain.models.loading import load_model, load_tokenizer

    model_cfg = composed().model
    torch.manual_seed(0)
    tokenizer = load_tokenizer(model_cfg)
    model = load_model(model_cfg, tokenizer, torch.float32, attention=attention).eval()
    generator = torch.Generator().manual_seed(1)
    examples = [{"input_ids": torch.randint(3, 200, (n,), generator=generator).tolist()} for n in (37, 120, 9)]
    losses = {}
    for padding_free in (False, True):
        collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=padding_free)
        batch = collate(examples)
        keep = ("input_ids", "labels", "position_ids", "attention_mask", "cu_seq_lens_q", "cu_seq_lens_k",
                "max_length_q", "max_length_k")
        with torch.no_grad():  # use_cache=False as SFTTrainer.compute_loss sets it: with a cache transformers
            # reads position_ids as decoding positions and builds no per-example mask
            inputs = {k: v for k, v in batch.items() if k in keep}
            losses[padding_free] = model(**inputs, use_cache=False).loss.item()
    assert abs(losses[True] - losses[False]) < 1e-3, losses


def test_the_resolved_fields_exist_in_trls_configs(fake_h200, tmp_path):
    """What hardware=gpu hands TRL builds its SFT and DPO configs (guards against TRL renaming a field)."""
    from trl import DPOConfig, SFTConfig

    sft = resolve(composed("hardware=gpu", "model=qwen2.5-0.5b", "model.init=random"))
    config = SFTConfig(output_dir=str(tmp_path), **{**sft.training_arguments(), **sft.method_arguments("sft"),
                                                    "bf16": False, "use_cpu": True})
    assert config.packing and config.padding_free and config.packing_strategy == "bfd" and config.use_liger_kernel
    dpo = resolve(composed("hardware=gpu", "method=dpo", "model=qwen2.5-0.5b", "model.init=random"), "dpo")
    config = DPOConfig(output_dir=str(tmp_path), **{**dpo.training_arguments(), **dpo.method_arguments("dpo"),
                                                    "bf16": False, "use_cpu": True})
    assert config.precompute_ref_log_probs and config.optim == "adamw_torch_fused"


def test_throughput_choices_read_the_registry_row():
    from posttrain.hardware import online, packs, precomputes_reference, sequences_per_row

    assert packs("sft") and packs("pretrain") and packs("dpo") and packs("kto") and packs("orpo")
    assert not packs("reward") and not packs("grpo")
    assert precomputes_reference("dpo") and precomputes_reference("kto") and not precomputes_reference("online_dpo")
    assert online("online_dpo") and online("grpo") and not online("dpo")
    assert sequences_per_row("dpo") == 2 and sequences_per_row("online_dpo") == 1 and sequences_per_row("sft") == 1


def test_lora_on_a_mixture_of_experts_keeps_liger_off_the_experts(fake_h200, tmp_path):
    """Liger's fused expert kernel would skip the LoRA adapters peft puts on the expert weights (on an H200
    the Qwen3-30B-A3B DPO preset failed with it): Liger patches the rest (RMSNorm, RoPE: 174.6 -> 126.4 ms per
    pass of a 4-layer cut on an H100) and leaves the experts to posttrain's grouped products, whether asked for
    or chosen; a dense model gets all of Liger."""
    from trl import DPOConfig

    for knob in ("auto", "true"):
        cfg = composed("hardware=gpu", "method=dpo", "model=qwen3-30b-a3b", "model.init=random", "lora_rank=16",
                       f"hardware.liger={knob}")
        chosen = resolve(cfg, "dpo", lora=True)
        assert chosen.liger and chosen.liger_skips_experts
        assert "experts" in chosen.reasons["liger"] if knob == "auto" else chosen.reasons["liger"] == "set"
        args = chosen.training_arguments()
        assert args["use_liger_kernel"] and args["liger_kernel_config"] == {"swiglu": False}
    # TRL's DPOConfig takes it, and its own fused-loss switch is kept beside it
    config = DPOConfig(output_dir=str(tmp_path), **{**args, "bf16": False, "use_cpu": True})
    assert config.liger_kernel_config == {"swiglu": False}
    dense = resolve(composed("hardware=gpu", "method=dpo", "model=qwen3-8b", "lora_rank=16"), "dpo", lora=True)
    assert dense.liger and not dense.liger_skips_experts and "liger_kernel_config" not in dense.training_arguments()
    full = resolve(composed("hardware=gpu", "method=dpo", "model=qwen3-30b-a3b", "lora_rank=0"), "dpo", lora=False)
    assert full.liger and not full.liger_skips_experts


def test_a_full_logit_trainer_budgets_its_logits_into_the_micro_batch(fake_h200):
    """On an H200 the 0.5B architecture's CPO/ORPO ran out of memory at the micro-batch of 32 pairs picked for
    activations alone: TRL's experimental trainers hold full logits (151,936 entries a token), which a padded
    run's token budget counts (test_plan.py checks the plan counts them too). Packed, their padding-free
    trainers score through TRL's fused LM head and get DPO's budget."""
    common = ("hardware=gpu", "model=qwen2.5-0.5b", "model.init=random", "batch_size=32")
    dpo = resolve(composed(*common, "method=dpo"), "dpo")
    for method in ("cpo", "orpo", "simpo"):
        padded = resolve(composed(*common, f"method={method}", "hardware.packing=false"), method)
        assert padded.micro_batch_tokens <= dpo.micro_batch_tokens // 4 and padded.micro_batch < dpo.micro_batch
        assert padded.micro_batch * padded.accumulation == 32  # the effective batch is kept
        packed = resolve(composed(*common, f"method={method}"), method)
        assert packed.packing and packed.micro_batch_tokens == dpo.micro_batch_tokens
