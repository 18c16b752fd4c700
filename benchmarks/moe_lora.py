"""LoRA on a mixture of experts: forward+backward time of a cut of Qwen3-30B-A3B per way of adapting the
experts, on one GPU (the DPO guide's largest model trains 14.6% MFU with peft's expert adapters).

    python benchmarks/moe_lora.py --out moe_lora.md [--layers 4] [--rows 16] [--length 1024] [--autocast] [--liger]

Variants (all: LoRA rank 32 on attention, bf16, gradient checkpointing as the DPO guide's preset):
  peft        peft's all-linear: every expert's fused 3-D weight adapted through target_parameters (each
              forward forms W + B A for all 128 experts of a layer)
  grouped     the same adapters run by posttrain.models.expert_lora: x W_e + s (x A_e) B_e with grouped matrix
              products, no full-size update
  compiled    grouped, with its experts forward compiled by torch.compile (an experiment)
  frozen      no adapter on the experts (attention only): the floor
It prints ms per forward+backward, tokens/s, peak GiB and MFU (posttrain's LoRA count, speed.py).
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def build(layers: int, variant: str, rank: int, liger: bool = False):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "qwen3_moe", hidden_size=2048, intermediate_size=6144, num_hidden_layers=layers, num_attention_heads=32,
        num_key_value_heads=4, head_dim=128, vocab_size=151936, num_experts=128, num_experts_per_tok=8,
        moe_intermediate_size=768, norm_topk_prob=True, tie_word_embeddings=False)
    if liger:  # Liger's RMSNorm and RoPE kernels (class-level patches; its expert kernel would skip the adapters)
        from liger_kernel.transformers import apply_liger_kernel_to_qwen3_moe
        apply_liger_kernel_to_qwen3_moe(rope=True, rms_norm=True, swiglu=False, fused_linear_cross_entropy=False)
    torch.manual_seed(0)  # every variant starts from the same weights
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    targets = "all-linear" if variant in ("peft", "grouped", "compiled") else ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets))
    torch.manual_seed(1)
    for name, p in model.named_parameters():  # LoRA's B starts at zero: make the adapters count
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=1e-2)
    if variant in ("grouped", "compiled"):
        from posttrain.models import expert_lora
        assert expert_lora.install(model) == layers
        if variant == "compiled":  # an experiment: inductor fusing the routed copies' elementwise work
            expert_lora.experts_forward = torch.compile(expert_lora.experts_forward)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return model


def flops_per_token(model) -> int:
    """posttrain's LoRA convention (speed.py): 4 x frozen + 6 x adapter parameters a token meets (8 of 128
    experts and their adapters), without the embeddings and the output head (not run here)."""
    total = 0
    for name, p in model.named_parameters():
        if "embed_tokens" in name or "lm_head" in name:
            continue
        n = p.numel() * 8 // 128 if ".experts." in name else p.numel()
        total += (6 if p.requires_grad else 4) * n
    return total


def measure(variant: str, args) -> dict:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(args.layers, variant, args.rank, args.liger)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ids = torch.randint(0, 151936, (args.rows, args.length), device="cuda")
    inner = model.get_base_model().model

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.autocast):  # as the Trainer's bf16 runs
            hidden = inner(input_ids=ids).last_hidden_state
        hidden.float().pow(2).mean().backward()

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.autocast):
        hidden = inner(input_ids=ids).last_hidden_state
        # a layer that returns float32 under autocast makes every later one run in float32
        assert hidden.dtype == torch.bfloat16, f"the residual stream became {hidden.dtype}"
        first = hidden.float().pow(2).mean().item()  # the same weights give the same value on every adapted variant
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.iters
    tokens = args.rows * args.length
    flops = flops_per_token(model) * tokens
    row = {"variant": variant, "ms": round(seconds * 1e3, 1), "tokens_per_s": round(tokens / seconds),
           "mfu_percent": round(100 * flops / seconds / 989e12, 1), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
           "trainable": trainable, "value": round(first, 5)}
    if args.profile == variant:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        # operators (aten::...) and kernels together, by the GPU time each spends itself
        row["profile"] = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=45, max_name_column_width=70)
    del model
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--variants", default="peft,grouped,frozen")
    parser.add_argument("--profile", default="", help="a variant to profile once (operators and kernels by GPU time)")
    parser.add_argument("--liger", action="store_true", help="Liger's RMSNorm and RoPE kernels (not its experts)")
    parser.add_argument("--autocast", action="store_true", help="forward under bf16 autocast, as the Trainer runs")
    args = parser.parse_args()
    rows = []
    for variant in args.variants.split(","):
        try:
            rows.append(measure(variant, args))
        except Exception as err:  # noqa: BLE001 - a benchmark records a failed variant and goes on
            rows.append({"variant": variant, "error": f"{type(err).__name__}: {str(err)[:300]}"})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "profile"}), flush=True)
    import peft
    import transformers
    lines = [f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}, transformers {transformers.__version__}, "
             f"peft {peft.__version__}; Qwen3-30B-A3B cut to {args.layers} layers, {args.rows}x{args.length} tokens, "
             f"LoRA r{args.rank}, gradient checkpointing{', bf16 autocast' if args.autocast else ''}{', Liger RMSNorm/RoPE' if args.liger else ''}; MFU = (4 x frozen + 6 x adapter parameters a token meets: 8 of 128 experts;"
             " no embeddings/head) per token / 989 TFLOP/s", "", "| variant | ms per fwd+bwd | tokens/s | MFU % | peak GiB | trainable | mean h^2 |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['variant']} | {row['error']} | | | | | |")
        else:
            lines.append(f"| {row['variant']} | {row['ms']} | {row['tokens_per_s']} | {row['mfu_percent']} | "
                         f"{row['peak_gib']} | {row['trainable']:,} | {row['value']} |")
    for row in rows:
        if "profile" in row:
            lines += ["", f"Profile of {row['variant']}:", "```", row["profile"], "```"]
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines[:len(rows) + 4]))


if __name__ == "__main__":
    main()
