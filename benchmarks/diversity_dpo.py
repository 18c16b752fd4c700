"""Does DPO on embedding-diversity pairs make SmolLM2-135M more diverse? The `diversity` evaluator on the base
model and after DPO, per seed, as a Markdown table (issue 13: "DPO on pairs built by posttrain.pairs
criterion=embedding moves the diversity metric, in whichever direction it truly moves").

    python benchmarks/diversity_dpo.py [--seeds 1 2] [--limit 3] [--k 3] [--max-new-tokens 24] [--steps 10] [--learning-rate 5e-4]

Offline, on the CPU: builds the pairs from posttrain.pairs' example candidates (20 prompts x 4), then for each
seed scores the base model (in this process, loaded once) and runs `python -m posttrain method=dpo
dataset=embedding_diversity model=smollm2-135m lora_rank=8 ...` (its final evaluation is the same
evaluator with the same seed: both sides sample the same shipped prompts with the same random stream).
The defaults are sized for a shared 2-core CPU (about 10 minutes: SmolLM2 samples about 7 tokens/s there);
raise --limit, --k and --steps on a faster machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METRICS = ("embedding_diversity", "distinct_1", "distinct_2", "mean_completion_tokens")


def command(args: list[str], cwd: Path, module: str = "posttrain") -> float:
    """Runs `python -m <module> <args>` in `cwd`; its seconds (stops the benchmark with its error on failure)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"})
    seconds = time.perf_counter() - start
    print(f"$ python -m {module} {' '.join(args)}  # {seconds:.0f} s", file=sys.stderr)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return seconds


def eval_overrides(limit: int, k: int, max_new_tokens: int) -> list[str]:
    return ["eval=diversity", f"eval.limit={limit}", f"eval.k={k}", f"eval.max_new_tokens={max_new_tokens}"]


def base_scores(seeds: list[int], overrides: list[str]) -> tuple[dict[int, dict], float]:
    """The evaluator on the untrained model, once per seed; and the seconds it took (loading included)."""
    import torch
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from posttrain.evaluators import EvalRequest, diversity
    from posttrain.models.loading import load_model, load_tokenizer
    from posttrain.naming import register_resolvers

    start = time.perf_counter()
    register_resolvers()
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["~experiment", "model=smollm2-135m", *overrides])
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, tokenizer, torch.float32)
    settings = OmegaConf.to_container(cfg.eval, resolve=True)
    scores = {seed: diversity.evaluate(model, tokenizer, EvalRequest(settings, cfg.dataset, seed)).metrics for seed in seeds}
    return scores, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=3, help="shipped prompts scored (a seeded subset over the buckets)")
    parser.add_argument("--k", type=int, default=3, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--steps", type=int, default=10, help="DPO optimizer steps")
    parser.add_argument("--learning-rate", help="DPO learning rate (default: posttrain's learning-rate table)")
    args = parser.parse_args()
    overrides = eval_overrides(args.limit, args.k, args.max_new_tokens)

    work = Path(tempfile.mkdtemp(prefix="diversity_dpo_"))
    pairs = work / "embedding_diversity.parquet"
    pairs_seconds = command(["criterion=embedding", f"output={pairs}"], work, "posttrain.pairs")
    base, base_seconds = base_scores(args.seeds, overrides)
    print(f"base model scored for {len(args.seeds)} seeds in {base_seconds:.0f} s", file=sys.stderr)
    after, run_seconds = {}, {}
    for seed in args.seeds:
        run_seconds[seed] = command(["method=dpo", "dataset=embedding_diversity", f"dataset.path={pairs}",
                                     "model=smollm2-135m", "lora_rank=8", f"max_steps={args.steps}", "batch_size=4",
                                     f"seed={seed}", f"run_name=dpo_seed{seed}", *overrides,
                                     *([f"learning_rate={args.learning_rate}"] if args.learning_rate else [])], work)
        after[seed] = json.loads((work / "outputs" / f"dpo_seed{seed}" / "results.json").read_text())
        # each seed as it finishes (a long benchmark stopped early keeps what it measured)
        print(f"seed {seed}: " + ", ".join(f"{m} {base[seed][m]:.4f} -> {after[seed][m]:.4f}" for m in METRICS),
              file=sys.stderr, flush=True)

    rate = args.learning_rate or "the table's"
    print(f"\nSmolLM2-135M-Instruct, DPO (LoRA r=8, {args.steps} steps, batch 4, learning rate {rate}) on posttrain.pairs criterion=embedding "
          f"pairs of the example candidates; eval=diversity on {args.limit} shipped prompts x k={args.k}, "
          f"max_new_tokens={args.max_new_tokens}, temperature 1.0 (pairs: {pairs_seconds:.0f} s, base model: "
          f"{base_seconds:.0f} s for all seeds)\n")
    print("| seed | " + " | ".join(f"{m} base → DPO" for m in METRICS) + " | DPO run s |")
    print("|---|" + "---|" * (len(METRICS) + 1))
    for seed in args.seeds:
        cells = [f"{base[seed][m]:.4f} → {after[seed][m]:.4f}" for m in METRICS]
        print(f"| {seed} | " + " | ".join(cells) + f" | {run_seconds[seed]:.0f} |")
    mean = {m: (sum(base[s][m] for s in args.seeds) / len(args.seeds), sum(after[s][m] for s in args.seeds) / len(args.seeds))
            for m in METRICS}
    print("| mean | " + " | ".join(f"{b:.4f} → {a:.4f} ({a - b:+.4f})" for b, a in mean.values()) + " | |")
    rises = sum(after[s]["embedding_diversity"] > base[s]["embedding_diversity"] for s in args.seeds)
    print(f"\nembedding_diversity rose in {rises} of {len(args.seeds)} seeds. Per bucket (mean over seeds, base → DPO):")
    for bucket in ("low", "medium", "high"):
        key = f"embedding_diversity/creativity_{bucket}"
        if all(key in base[s] and key in after[s] for s in args.seeds):
            b = sum(base[s][key] for s in args.seeds) / len(args.seeds)
            a = sum(after[s][key] for s in args.seeds) / len(args.seeds)
            print(f"- {bucket}: {b:.4f} → {a:.4f}")
    print(f"\nrun directories: {work}/outputs", file=sys.stderr)


if __name__ == "__main__":
    main()
