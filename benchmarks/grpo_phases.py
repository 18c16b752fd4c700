"""Where a GRPO step's time goes at a guide's size: sampling, rewards, log-probabilities and training, timed
apart, and one generate call profiled.

    python benchmarks/grpo_phases.py --out /tmp/grpo_phases [--case tictactoe_grpo_qwen2.5-0.5b] [--steps 12]
        [--set hardware.compile_generation=false ...]
    python benchmarks/grpo_phases.py --smoke --steps 3 --out /tmp/grpo_phases   # CPU, tiny model: the plumbing

It runs the case of benchmarks/guides_full_size.py (the real command line, model.init=random, synthetic
prompts) in a child process whose TRL profiling blocks (`transformers.generate`, the reward functions,
`_get_per_token_logps_and_entropies`, ...) and whose whole `_generate_and_score_completions` and
`training_step` are timed with a GPU sync at both ends. --profile-call N records generate call N (1 = the
first, which compiles) with torch.profiler: --out's generate_profile.txt (kernels, host time) and
generate_profile.gaps.txt (where the GPU waited on the host). Writes phases.jsonl (one line per timed call)
and phases.md under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(out: Path, profile_call: int, argv: list[str]) -> None:
    """Runs `python -m posttrain argv` in this process with the timers installed; appends to phases.jsonl."""
    import torch
    from trl.extras.profiling import ProfilingContext
    from trl.trainer.grpo_trainer import GRPOTrainer

    log = open(out / "phases.jsonl", "a")
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    calls = defaultdict(int)
    profiled_step = [False]  # the training step holding the profiled call: its timings include the profiler's

    def record(name: str, seconds: float) -> None:
        log.write(json.dumps({"name": name, "seconds": seconds, "profiled": profiled_step[0]}) + "\n")
        log.flush()

    enter, leave = ProfilingContext.__enter__, ProfilingContext.__exit__

    def synced_enter(self):
        sync()
        return enter(self)

    def synced_exit(self, *exc):
        sync()
        return leave(self, *exc)

    ProfilingContext.__enter__, ProfilingContext.__exit__ = synced_enter, synced_exit
    ProfilingContext._log_metrics = lambda self, duration: record(self.name.split(".", 1)[-1], duration)

    def timed(name, method, profiled=False):
        def wrapper(self, *args, **kwargs):
            calls[name] += 1
            profiler = None
            if profiled and calls[name] == profile_call:
                profiled_step[0] = True
                profiler = torch.profiler.profile(with_stack=True, activities=[
                    torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA])
                profiler.__enter__()
            sync()
            started = time.perf_counter()
            result = method(self, *args, **kwargs)
            sync()
            wall = time.perf_counter() - started
            record(name, wall)
            if profiler is not None:
                profiler.__exit__(None, None, None)
                from gpu_throughput import write_profile

                write_profile(profiler, wall, 1, out / "generate_profile.txt")
            if name == "training_step":
                profiled_step[0] = False
            return result
        return wrapper

    if os.environ.get("GRPO_PHASES_REPEATED_KV") == "1":  # the decoding before grouped decode attention
        from posttrain.models import decode_attention

        decode_attention.use_grouped_decode_attention = lambda model: False
    GRPOTrainer._generate_and_score_completions = timed("generate_and_score", GRPOTrainer._generate_and_score_completions)
    GRPOTrainer._generate_single_turn = timed("generate_single_turn", GRPOTrainer._generate_single_turn,
                                              profiled=profile_call > 0)
    GRPOTrainer.training_step = timed("training_step", GRPOTrainer.training_step)
    sys.argv = ["posttrain", *argv]
    runpy.run_module("posttrain", run_name="__main__")


def summary(out: Path, steps: int) -> str:
    rows = [json.loads(line) for line in (out / "phases.jsonl").read_text().splitlines() if line.strip()]
    by_name = defaultdict(list)
    for row in rows:
        if not row["profiled"]:
            by_name[row["name"]].append(row["seconds"])
    lines = ["Timed calls outside the profiled step; the first call compiles.", "",
             "| phase | calls | first s | mean s after the first | total s after the first |", "|---|---|---|---|---|"]
    for name, seconds in sorted(by_name.items(), key=lambda item: -sum(item[1][1:])):
        rest = seconds[1:]
        mean = sum(rest) / len(rest) if rest else 0.0
        lines.append(f"| {name} | {len(seconds)} | {seconds[0]:.3f} | {mean:.4f} | {sum(rest):.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
        return
    from guides_full_size import CASES, REPO, build_rows, build_tokenizer, max_length_of

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--case", default="tictactoe_grpo_qwen2.5-0.5b", choices=[c for c in CASES if "grpo" in c])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--profile-call", type=int, default=2, help="generate call to profile (0: none)")
    p.add_argument("--work", default="/tmp/posttrain-grpo-phases")
    p.add_argument("--set", nargs="*", default=[], help="extra overrides, e.g. hardware.compile_generation=false")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model: checks the plumbing")
    p.add_argument("--repeated-kv", action="store_true",
                   help="decode as before posttrain.models.decode_attention: SDPA on repeated key/value heads")
    a = p.parse_args()
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    (out / "phases.jsonl").unlink(missing_ok=True)
    overrides, kind, vocab = CASES[a.case]
    overrides = overrides + a.set
    if a.smoke:
        overrides = [o for o in overrides if not o.startswith("model=")] + ["model=tiny", "batch_size=16"]
        vocab = 512
    tokenizer = work / f"tokenizer-{vocab}"
    if not tokenizer.exists():
        build_tokenizer(tokenizer, vocab)
    max_length, per_step = max_length_of(overrides)
    max_length = 64 if a.smoke else max_length
    data = work / f"{a.case}.jsonl"
    build_rows(data, kind, per_step * a.steps + 64, max_length, vocab)
    run = work / "runs" / a.case
    shutil.rmtree(run, ignore_errors=True)  # a fresh run each time (a completed one would refuse other settings)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", str(out.resolve()), str(a.profile_call),
        *overrides, "model.init=random", f"model.tokenizer={tokenizer}", f"model.max_length={max_length}",
        "dataset=local", f"dataset.path={data}", "dataset.eval_fraction=0.01", f"max_steps={a.steps}",
        "training.logging_steps=1", "training.save_steps=0", "logger=none", f"run_name={a.case}",
        f"hydra.run.dir={run}", "hardware=cpu" if a.smoke else "hardware=gpu",
    ] + (["method.args.max_completion_length=8"] if a.smoke else [])
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}",
           "GRPO_PHASES_REPEATED_KV": "1" if a.repeated_kv else "0"}
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
    text = f"{a.case} {' '.join(a.set)}{' --repeated-kv' if a.repeated_kv else ''}: exit {result.returncode}, {time.monotonic() - started:.1f} s\n\n"
    if result.returncode:
        text += result.stderr[-3000:] + "\n"
    if (out / "phases.jsonl").exists():
        text += summary(out, a.steps)
    metrics = run / "metrics.jsonl"
    if metrics.exists():
        text += "\nstep, tokens seen, tokens/s, MFU %, step s\n"
        for line in metrics.read_text().splitlines():
            m = json.loads(line)
            if "step" in m:
                text += (f"{m['step']} {m.get('num_tokens')} {m.get('tokens_per_second')} "
                         f"{m.get('mfu_percent')} {m.get('step_time')}\n")
    (out / "phases.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
