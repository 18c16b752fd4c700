"""The guides' runs at their real model sizes on one GPU: speed, memory, and the plan's estimate beside the
measured peak.

    python benchmarks/guides_full_size.py --out benchmarks/results/guides_full_size.md [--cases a,b] [--budget 480]
    python benchmarks/guides_full_size.py --smoke --out /tmp/guides.md     # CPU, tiny model: checks the plumbing

A random-init LoRA run saves its base model beside the adapter (Qwen3-30B-A3B: 61 GB) before it trains: on a
small disk give --work a folder in RAM (--work /dev/shm/g on a machine with the memory for it).

Each case is the real command line (`python -m posttrain <preset or method> model=<guide's model>
model.init=random hardware=gpu ...`) in its own process, on synthetic rows that fill model.max_length (so the
plan's worst case is the case measured), with a word-level tokenizer of the model's real vocabulary built
here offline (weights do not change speed or memory: the published architecture with random weights
measures what the user gets). It trains --steps optimizer steps and reads the run's own results.json:
tokens/s (real tokens), MFU, peak allocated GPU memory, and planned_peak_memory_gib (plan=true's estimate
for the same config). tokens/s and MFU are the mean of the speed windows after the first; the record also
keeps their median window, the steady figure when a later window holds a one-time compile. Cases run in
order until --budget seconds are spent; a case that fails records its error line. Gradient accumulation is
cut where the guide's is large (the DPO guide's 32 to 8: an effective batch of 64 still lets the automatic
micro-batch reach the 32 it picks at the guide's 256; memory and tokens/s depend on the micro-batch, not on
accumulation; seconds per guide step = its tokens / tokens per second).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]

GRPO_REWARD = "method.rewards=[{name: format, pattern: 'w1'}]"
# name -> (overrides, row kind, vocabulary of the model's tokenizer)
CASES = {
    "tictactoe_sft_qwen2.5-0.5b": (["method=sft", "model=qwen2.5-0.5b"], "sft", 151_936),
    "tictactoe_dpo_qwen2.5-0.5b": (["method=dpo", "model=qwen2.5-0.5b"], "dpo", 151_936),
    "diversity_dpo_qwen3-4b": (["experiment=diversity_dpo", "model=qwen3-4b",
                                "training.gradient_accumulation_steps=8"], "dpo", 151_936),
    "smollm3_sft_smollm3-3b": (["method=sft", "model=smollm3-3b"], "sft", 128_256),
    "smollm3_dpo_smollm3-3b": (["method=dpo", "model=smollm3-3b", "batch_size=8"], "dpo", 128_256),
    "diversity_dpo_qwen3-8b": (["experiment=diversity_dpo", "model=qwen3-8b",
                                "training.gradient_accumulation_steps=8"], "dpo", 151_936),
    "diversity_dpo_qwen3-30b-a3b": (["experiment=diversity_dpo", "model=qwen3-30b-a3b",
                                     "training.gradient_accumulation_steps=8"], "dpo", 151_936),
    "nli_qlora_mistral-7b": (["experiment=nli_qlora"], "sft", 32_000),
    "minimind_sft_qwen2.5-0.5b": (["experiment=minimind_posttrain", "method=sft", "model=qwen2.5-0.5b"], "sft", 151_936),
    "minimind_dpo_qwen2.5-0.5b": (["experiment=minimind_posttrain", "method=dpo", "model=qwen2.5-0.5b"], "dpo", 151_936),
    # GRPO on the synthetic rows: a format reward of the same cost as the game's (the rows are not boards)
    "minimind_grpo_qwen2.5-0.5b": (["experiment=minimind_posttrain", "method=grpo", "model=qwen2.5-0.5b",
                                    GRPO_REWARD], "grpo", 151_936),
    "tictactoe_grpo_qwen2.5-0.5b": (["experiment=tictactoe_grpo", "method=grpo", "model=qwen2.5-0.5b",
                                     GRPO_REWARD], "grpo", 151_936),
}


def build_tokenizer(folder: Path, vocab: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>"]
    words = {w: i for i, w in enumerate(specials + [f"w{i}" for i in range(vocab - len(specials))])}
    core = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                            unk_token="<unk>").save_pretrained(folder)


def build_rows(path: Path, kind: str, rows: int, max_length: int, vocab: int) -> None:
    """Rows whose prompt (a quarter) and completion fill max_length tokens, one word a token."""
    rng = random.Random(0)
    text = lambda n: " ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(n))  # noqa: E731
    prompt_len = 64 if kind == "grpo" else max_length // 4  # GRPO: a short question, the completion is sampled
    completion_len = max_length - prompt_len - 4
    with open(path, "w") as out:
        for _ in range(rows):
            row = {"prompt": text(prompt_len)}
            if kind == "sft":
                row["completion"] = " " + text(completion_len)
            elif kind == "dpo":
                row["chosen"], row["rejected"] = " " + text(completion_len), " " + text(completion_len)
            out.write(json.dumps(row) + "\n")


def max_length_of(overrides: list[str]) -> int:
    sys.path.insert(0, str(REPO / "src"))
    from hydra import compose, initialize_config_module

    import posttrain.compose  # noqa: F401  (resolvers)
    from posttrain.compose import command_overrides

    overrides = command_overrides(overrides)  # composes a preset's stages itself: outside the block below
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return int(cfg.model.max_length), int(cfg.batch_size) * int(cfg.training.gradient_accumulation_steps)


def run_case(name: str, a, work: Path) -> dict:
    overrides, kind, vocab = CASES[name]
    overrides = overrides + a.set
    if a.smoke:
        overrides = [o for o in overrides if not o.startswith("model=")] + ["model=tiny"]
        vocab = 512
    tokenizer = work / f"tokenizer-{vocab}"
    if not tokenizer.exists():
        build_tokenizer(tokenizer, vocab)
    max_length, per_step = max_length_of(overrides)
    if a.smoke:
        max_length = 64
    data = work / f"{name}.jsonl"
    build_rows(data, kind, per_step * a.steps + 64, max_length, vocab)
    command = [
        sys.executable, "-m", "posttrain", *overrides, "model.init=random", f"model.tokenizer={tokenizer}",
        f"model.max_length={max_length}", "dataset=local", f"dataset.path={data}", "dataset.eval_fraction=0.01",
        f"max_steps={a.steps}", "training.logging_steps=1", "training.save_steps=0", "logger=none",
        f"run_name={name}", f"hydra.run.dir={work / 'runs' / name}",
    ] + (["hardware=cpu"] if a.smoke else ["hardware=gpu"])
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=work,
                            env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"})
    record = {"case": name, "command": " ".join(["python -m posttrain", *overrides, "model.init=random", "..."]),
              "wall_s": round(time.monotonic() - started, 1)}
    run = work / "runs" / name
    if result.returncode != 0 or not (run / "results.json").exists():
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        record["error"] = lines[-1][:300] if lines else f"exit {result.returncode}"
        return record
    results = json.loads((run / "results.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    # the first step (compilation, allocator warm-up) is left out of the steady figures, as results.json cannot
    steady = [m["tokens_per_second"] for m in metrics if "tokens_per_second" in m][1:] or [results.get("tokens_per_second")]
    steady_mfu = [m["mfu_percent"] for m in metrics if m.get("mfu_percent")][1:] or [results.get("mfu_percent")]
    hardware = json.loads((run / "hardware.json").read_text()) if (run / "hardware.json").exists() else {}
    record.update({
        "tokens_per_second": round(sum(steady) / len(steady)) if steady and steady[0] else None,
        "mfu_percent": round(sum(steady_mfu) / len(steady_mfu), 1) if steady_mfu and steady_mfu[0] else None,
        "peak_gib": results.get("peak_memory_gib"),
        "planned_gib": results.get("planned_peak_memory_gib"),
        "micro_batch": micro_batch(hardware),
        # the median window is the steady figure when one window holds a one-time compile (GRPO's second
        # padded prompt shape): the mean above counts it
        "median_window": {"tokens_per_second": median(steady) if steady and steady[0] else None,
                          "mfu_percent": median(steady_mfu) if steady_mfu and steady_mfu[0] else None},
        "loss": [m.get("loss") for m in metrics if "loss" in m][-1:],
    })
    if record["peak_gib"] and record["planned_gib"]:
        record["plan_error"] = round(record["planned_gib"] / record["peak_gib"] - 1, 3)
    return record


def micro_batch(hardware: dict) -> str:
    """rows x accumulation as hardware.json records them (the run's own batch when auto left it), and the
    optimizer steps one generate call samples for (online RL)."""
    shown = f"{hardware['micro_batch']}x{hardware['accumulation']}" if hardware.get("micro_batch") else "run's own"
    return shown + (f", rollouts x{hardware['rollout_steps']}" if hardware.get("rollout_steps") else "")


def table(records: list[dict]) -> str:
    head = "| case | micro-batch | tokens/s | MFU % | peak GiB | plan GiB | plan error | wall s | note |\n|---|---|---|---|---|---|---|---|---|\n"
    rows = [
        f"| {r['case']} | {r.get('micro_batch', '')} | {r.get('tokens_per_second', '')} | {r.get('mfu_percent', '')} | "
        f"{r.get('peak_gib', '')} | {r.get('planned_gib', '')} | {r.get('plan_error', '')} | {r['wall_s']} | "
        f"{r.get('error', '')} |"
        for r in records
    ]
    return head + "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--budget", type=float, default=480, help="seconds; no case starts after it is spent")
    parser.add_argument("--work", default="/tmp/posttrain-guides")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every case, e.g. batch_size=4")
    a = parser.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    started, records = time.monotonic(), []
    for name in a.cases.split(","):
        if time.monotonic() - started > a.budget:
            records.append({"case": name, "wall_s": 0, "error": "not run: --budget spent"})
            continue
        records.append(run_case(name, a, work))
        Path(a.out).write_text(table(records) + "\n```\n" + json.dumps(records, indent=1) + "\n```\n")
        print(json.dumps(records[-1]), flush=True)
    import torch

    versions = f"torch {torch.__version__}"
    for package in ("transformers", "trl", "peft"):
        versions += f", {package} {__import__(package).__version__}"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    Path(a.out).write_text(f"GPU: {gpu}; {versions}\n\n" + table(records) + "\n```\n" + json.dumps(records, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
