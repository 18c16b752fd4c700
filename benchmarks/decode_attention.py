"""Compiled static-cache decoding (what GRPO's generate call runs under hardware.compile_generation) with
different attention paths for the one-token decode step, at the tic-tac-toe guide's GRPO size.

    python benchmarks/decode_attention.py --out /tmp/decode.md [--variants baseline,packed] [--batch 512]

Each variant runs in its own process (an environment switch is read at import): Qwen2.5-0.5B's architecture,
random init, bf16, `--batch` left-padded prompts of `--prompt` tokens, `--new` sampled tokens (TRL's GRPO
sampling settings: temperature 0.5, top_p 1, top_k 0), one generate call to compile, then --repeats timed.
Variants:
  sdpa       transformers' sdpa: under torch.compile the key/value heads are repeated to the query heads
  grouped    posttrain.models.decode_attention: a decode step is SDPA with enable_gqa, prefill is transformers'
  packed     a decode step's query heads reshaped onto their key/value head (transformers' eager pack_gqa,
             here also compiled), no repeat
  force_gqa  transformers' TRANSFORMERS_SDPA_FORCE_GQA=1 (enable_gqa in every SDPA call, prefill included)
  *_no_cudnn the same with SDPA's cuDNN backend off (torch.backends.cuda.enable_cudnn_sdp(False))
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("sdpa", "grouped", "packed", "force_gqa", "sdpa_no_cudnn", "grouped_no_cudnn")


def packed_decode_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The alternative to enable_gqa: a decode step's (batch, heads, 1, dim) query as (batch, kv_heads, groups,
    dim) against the cache's key/value heads."""
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = module.num_key_value_groups
    if query.shape[2] != 1 or groups == 1 or (attention_mask is not None and attention_mask.shape[1] != 1):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    batch, heads, _, dim = query.shape
    out = F.scaled_dot_product_attention(query.reshape(batch, heads // groups, groups, dim), key, value,
                                         attn_mask=attention_mask, dropout_p=dropout, scale=scaling)
    return out.reshape(batch, heads, 1, dim).transpose(1, 2).contiguous(), None


def child(variant: str, batch: int, prompt: int, new: int, repeats: int) -> dict:
    import torch
    from omegaconf import OmegaConf
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    sys.path.insert(0, str(REPO / "src"))
    torch.manual_seed(0)
    architecture = OmegaConf.to_container(OmegaConf.load(REPO / "conf/model/qwen2.5-0.5b.yaml").architecture)
    architecture.pop("model_type")
    config = Qwen2Config(**architecture, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    with torch.device("cuda"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16).eval()
    model.set_attn_implementation("sdpa")
    if variant.startswith("grouped"):
        from posttrain.models.decode_attention import use_grouped_decode_attention

        assert use_grouped_decode_attention(model)
    if variant == "packed":
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

        AttentionInterface.register("sdpa_packed_decode", packed_decode_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa_packed_decode", sdpa_mask)
        model.set_attn_implementation("sdpa_packed_decode")
    if variant.endswith("_no_cudnn"):
        torch.backends.cuda.enable_cudnn_sdp(False)
    generation = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=True, temperature=0.5,
                                  top_p=1.0, top_k=0, pad_token_id=0, eos_token_id=1,
                                  cache_implementation="static", disable_compile=False)
    ids = torch.randint(3, config.vocab_size, (batch, prompt), device="cuda")
    mask = torch.ones_like(ids)
    mask[::2, : prompt // 4] = 0  # half the rows left-padded, as a batch of prompts of two lengths is
    ids[mask == 0] = 0
    times = []
    for _ in range(1 + repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=generation)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    # the same greedy continuation under every variant says the attention computes the same thing
    with torch.no_grad():
        greedy = model.generate(input_ids=ids[:4], attention_mask=mask[:4], max_new_tokens=8, do_sample=False,
                                pad_token_id=0, eos_token_id=1)
    steady = sorted(times[1:])[len(times[1:]) // 2]
    return {"variant": variant, "compile_s": round(times[0], 2), "generate_s": round(steady, 4),
            "ms_per_token_step": round(1000 * steady / new, 2), "tokens_per_s": round(batch * new / steady),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "greedy": greedy[:, prompt:].tolist(), "shape": list(out.shape)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print("RESULT " + json.dumps(child(sys.argv[2], *map(int, sys.argv[3:7]))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--new", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    records = []
    for variant in a.variants.split(","):
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
        if variant == "force_gqa":
            env["TRANSFORMERS_SDPA_FORCE_GQA"] = "1"
        done = subprocess.run([sys.executable, __file__, "--child", variant, str(a.batch), str(a.prompt), str(a.new),
                               str(a.repeats)], capture_output=True, text=True, env=env)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        record = json.loads(lines[-1][7:]) if lines else {"variant": variant, "error": done.stderr.strip()[-400:]}
        records.append(record)
        print(json.dumps(record), flush=True)
    import torch

    text = (f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; batch {a.batch}, prompt {a.prompt}, "
            f"{a.new} new tokens\n\n| variant | compile s | generate s | ms a token step | tokens/s | peak GiB |\n"
            "|---|---|---|---|---|---|\n")
    for r in records:
        text += (f"| {r['variant']} | {r.get('compile_s', '')} | {r.get('generate_s', '')} | "
                 f"{r.get('ms_per_token_step', '')} | {r.get('tokens_per_s', '')} | {r.get('peak_gib', r.get('error', ''))} |\n")
    Path(a.out).write_text(text + "\n```\n" + json.dumps(records, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
