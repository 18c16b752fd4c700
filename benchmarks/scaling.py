"""Scaling over GPUs: the same SFT and DPO run on 1 and on N GPUs of one node; tokens/s per GPU and the
scaling efficiency (tokens/s on N GPUs / (N x tokens/s on one)).

    python benchmarks/scaling.py --gpus 1,2 --out scaling.md                         # DDP, Qwen2.5-0.5B architecture
    python benchmarks/scaling.py --gpus 2 --strategy fsdp --model qwen3-8b --methods sft --set lora_rank=0
    python benchmarks/scaling.py --smoke --gpus 1,2 --out /tmp/scaling.md            # CPU, gloo, tiny model: the plumbing

Each case is the real command (`python -m posttrain method=<m> model=<model> model.init=random hardware=gpu
hardware.gpus=<n> hardware.strategy=<s> ...`) in its own process, on the synthetic full-length rows of
benchmarks/guides_full_size.py (a word-level tokenizer of the model's vocabulary built here offline). The
effective batch grows with the processes (batch_size x accumulation per process, as with any data-parallel
launcher), so each GPU does the same work per step in every case. tokens/s is the run's own steady figure
(the steps after the first, from metrics.jsonl), counted over all processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from guides_full_size import build_rows, build_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VOCABULARY = {"qwen2.5-0.5b": 151_936, "qwen3-4b": 151_936, "qwen3-8b": 151_936, "smollm3-3b": 128_256,
              "mistral-7b": 32_000, "tiny": 512}


def run_case(method: str, gpus: int, a, work: Path) -> dict:
    model = "tiny" if a.smoke else a.model
    vocab = VOCABULARY.get(model, 151_936)
    tokenizer = work / f"tokenizer-{vocab}"
    if not tokenizer.exists():
        build_tokenizer(tokenizer, vocab)
    data = work / f"{method}.jsonl"
    if not data.exists():
        build_rows(data, method, a.batch_size * max(int(g) for g in a.gpus.split(",")) * (a.steps + 2),
                   a.max_length, vocab)
    name = f"{method}-{model}-{gpus}gpu-{a.strategy}"
    command = [
        sys.executable, "-m", "posttrain", f"method={method}", f"model={model}", "model.init=random",
        f"model.tokenizer={tokenizer}", f"model.max_length={a.max_length}", "dataset=local", f"dataset.path={data}",
        "dataset.eval_fraction=0", "eval=none", f"batch_size={a.batch_size}", f"max_steps={a.steps}",
        "training.logging_steps=1", "training.save_steps=0", "logger=none", f"run_name={name}",
        f"hydra.run.dir={work / 'runs' / name}", f"hardware.gpus={gpus}", f"hardware.strategy={a.strategy}",
        "hardware=cpu" if a.smoke else "hardware=gpu", *a.set,
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=work,
                          env={**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"})
    record = {"method": method, "gpus": gpus, "strategy": a.strategy, "wall_s": round(time.monotonic() - started, 1)}
    run = work / "runs" / name
    if done.returncode != 0 or not (run / "metrics.jsonl").exists():
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        record["error"] = lines[-1][:300] if lines else f"exit {done.returncode}"
        return record
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steady = [m["tokens_per_second"] for m in metrics if m.get("tokens_per_second")][1:]
    peaks = [m["peak_memory_gib"] for m in metrics if m.get("peak_memory_gib")]
    if steady:
        record["tokens_per_second"] = round(sum(steady) / len(steady))
        record["per_gpu"] = round(record["tokens_per_second"] / gpus)
    record["peak_gib"] = max(peaks) if peaks else None
    return record


def table(records: list[dict]) -> str:
    one = {r["method"]: r.get("tokens_per_second") for r in records if r["gpus"] == 1}
    lines = ["| method | GPUs | strategy | tokens/s | per GPU | scaling efficiency | peak GiB | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        total, base = r.get("tokens_per_second"), one.get(r["method"])
        efficiency = f"{total / (r['gpus'] * base):.2f}" if total and base else ""
        lines.append(f"| {r['method']} | {r['gpus']} | {r['strategy']} | {total or ''} | {r.get('per_gpu', '')} | "
                     f"{efficiency} | {r.get('peak_gib') or ''} | {r.get('error', '')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--gpus", default="1,2", help="process counts to compare, e.g. 1,2 or 1,2,4,8")
    parser.add_argument("--methods", default="sft,dpo")
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp"])
    parser.add_argument("--batch-size", type=int, default=16, help="rows per process per step")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every case")
    parser.add_argument("--work", default="/tmp/posttrain-scaling")
    parser.add_argument("--smoke", action="store_true", help="CPU (gloo) with the tiny model: checks the plumbing")
    a = parser.parse_args()
    if a.smoke:
        a.batch_size, a.max_length, a.steps = min(a.batch_size, 4), 64, min(a.steps, 3)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    records = []
    for method in a.methods.split(","):
        for gpus in (int(g) for g in a.gpus.split(",")):
            records.append(run_case(method, gpus, a, work))
            print(json.dumps(records[-1]), flush=True)
            Path(a.out).write_text(table(records))
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not a.smoke else "CPU (gloo)"
    Path(a.out).write_text(f"{device}; {a.model if not a.smoke else 'tiny'}, rows of {a.max_length} tokens, "
                           f"batch {a.batch_size} per process\n\n" + table(records))
    print(Path(a.out).read_text())


if __name__ == "__main__":
    main()
