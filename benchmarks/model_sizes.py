"""Parameter counts of conf/model/'s architectures at full size, built on the meta device (no memory, no
weights, no network), next to the sizes their model cards publish: proof that each config's dimensions
are the real model's.

Usage (from the repository root, with posttrain importable): python benchmarks/model_sizes.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.utils import logging as hf_logging

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"

# Parameter counts published with each model (the hub's safetensors total, embeddings included), as the
# model configs record them.
PUBLISHED = {
    path.stem: OmegaConf.load(path).published_parameters
    for path in sorted(CONF.glob("*.yaml")) if "published_parameters" in OmegaConf.load(path)
}
# Active parameters per token the model card gives for mixture-of-experts models.
PUBLISHED_ACTIVE = {"qwen3-30b-a3b": 3.3e9}


def meta_model(name: str):
    """The full-size architecture of conf/model/<name>.yaml with its published vocabulary, on `meta`."""
    architecture = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml").architecture, resolve=True)
    config = AutoConfig.for_model(architecture.pop("model_type"), **architecture)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def count(model) -> dict:
    total = model.num_parameters()
    embedding = model.get_input_embeddings().weight.numel()
    if not model.config.tie_word_embeddings:
        embedding += model.get_output_embeddings().weight.numel()  # the cards count the output head as one too
    config = model.config
    active = total
    experts = getattr(config, "num_experts", None)
    if experts:
        expert_params = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
        active = total - expert_params + expert_params * config.num_experts_per_tok // experts
    return {"total": total, "non_embedding": total - embedding, "active": active}


def main() -> int:
    hf_logging.set_verbosity_error()
    rows, worst = [], 0.0
    for name, published in PUBLISHED.items():
        started = time.perf_counter()
        sizes = count(meta_model(name))
        seconds = time.perf_counter() - started
        off = 100.0 * (sizes["total"] - published) / published
        worst = max(worst, abs(off))
        active = f"{sizes['active'] / 1e9:.2f}B" if sizes["active"] != sizes["total"] else "all"
        if name in PUBLISHED_ACTIVE:
            active += f" (card {PUBLISHED_ACTIVE[name] / 1e9:.1f}B)"
        rows.append((name, f"{sizes['total']:,}", f"{published:,}", f"{off:+.3f}%",
                     f"{sizes['non_embedding'] / 1e9:.3f}B", active, f"{seconds:.1f}"))
    header = ("config", "parameters (meta)", "published", "off by", "non-embedding", "active/token", "build s")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))
    print(f"largest difference: {worst:.3f}%")
    return 0 if worst < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
