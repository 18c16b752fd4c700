"""Where a GPU waits on the host: the idle gaps between kernels in a torch profiler trace, charged to the
Python code the host was running during them, and the host syncs with the code that made them.

    python benchmarks/trace_gaps.py trace.json [--steps 3]

The trace is torch.profiler's chrome trace recorded with `with_stack=True` (gpu_throughput.py --profile
writes one per case). A gap is time with no kernel, copy or memset on the GPU; each 20 µs of it is charged
to the innermost Python frames running on the main thread at that moment.
"""
from __future__ import annotations

import argparse
import bisect
import json
from collections import Counter
from pathlib import Path

GPU_CATEGORIES = {"kernel", "gpu_memcpy", "gpu_memset"}
SYNC_CALLS = {"cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize"}
# frames that say nothing about whose code it is: module plumbing, context managers, builtins
PLUMBING = ("torch/nn/modules/module.py", "contextlib.py", "<built-in", "torch/utils/_contextlib.py",
            "torch/_compile.py", "torch/_dynamo/", "torch/autograd/", "torch/_tensor.py", "nn.Module:",
            "torch/utils/_device.py", "threading.py", "torch/profiler/")
SAMPLE_US = 20.0


def merged_busy(events: list[dict]) -> list[tuple[float, float]]:
    """The GPU's busy intervals: every kernel/copy/memset, overlapping ones merged."""
    spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") in GPU_CATEGORIES)
    busy: list[list[float]] = []
    for start, end in spans:
        if busy and start <= busy[-1][1]:
            busy[-1][1] = max(busy[-1][1], end)
        else:
            busy.append([start, end])
    return [(s, e) for s, e in busy]


def frame_label(stack: list[str], depth: int = 3) -> str:
    """The innermost `depth` frames that are someone's code, innermost first."""
    own = [name for name in reversed(stack) if not any(p in name for p in PLUMBING)]
    return " < ".join(own[:depth]) or (stack[-1] if stack else "(no Python frame)")


def stacks_at(frames: list[dict], times: list[float]) -> list[list[str]]:
    """The Python call stack (outermost first) at each of the sorted `times`: one sweep over the properly
    nested frame events of one thread."""
    frames = sorted(frames, key=lambda e: (e["ts"], -e["dur"]))
    out, stack, i = [], [], 0
    for t in times:
        while i < len(frames) and frames[i]["ts"] <= t:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= frames[i]["ts"]:
                stack.pop()
            stack.append(frames[i])
            i += 1
        while stack and stack[-1]["ts"] + stack[-1]["dur"] <= t:
            stack.pop()
        out.append([f["name"] for f in stack if f["ts"] + f["dur"] > t])
    return out


def analyse(trace: dict, steps: int = 1, min_gap_us: float = 20.0) -> list[str]:
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    busy = merged_busy(events)
    if not busy:
        return ["no GPU activity in the trace"]
    frames = [e for e in events if e.get("cat") == "python_function"]
    threads = Counter(e.get("tid") for e in frames)
    main = threads.most_common(1)[0][0] if threads else None
    frames = [e for e in frames if e.get("tid") == main]
    window = busy[-1][1] - busy[0][0]
    gaps = [(a[1], b[0]) for a, b in zip(busy, busy[1:]) if b[0] - a[1] >= min_gap_us]
    idle = sum(b - a for a, b in gaps)
    lines = [f"GPU window {window / 1e3:.1f} ms over {steps} step(s): busy {100 * (1 - idle / window):.1f}%, "
             f"{len(gaps)} gaps >= {min_gap_us:.0f} us totalling {idle / 1e3:.1f} ms "
             f"({idle / 1e3 / steps:.1f} ms a step)", ""]
    sizes = sorted((b - a for a, b in gaps), reverse=True)
    lines.append("largest gaps (ms): " + ", ".join(f"{s / 1e3:.2f}" for s in sizes[:15]))

    samples = [a + SAMPLE_US * (k + 0.5) for a, b in gaps for k in range(max(1, int((b - a) // SAMPLE_US)))]
    charged: Counter = Counter()
    for stack in stacks_at(frames, samples):
        charged[frame_label(stack)] += SAMPLE_US
    lines += ["", "GPU idle time by the host code running then (ms a step, innermost frame first):"]
    lines += [f"{v / 1e3 / steps:8.2f}  {k}" for k, v in charged.most_common(30)]

    syncs = sorted((e for e in events if e.get("cat") == "cuda_runtime"
                    and (e["name"] in SYNC_CALLS or (e["name"].startswith("cudaMemcpy") and e["dur"] > 50))),
                   key=lambda e: e["ts"])
    where: Counter = Counter()
    waited: Counter = Counter()
    for sync, stack in zip(syncs, stacks_at(frames, [e["ts"] for e in syncs])):
        label = frame_label(stack, depth=4)
        where[label] += 1
        waited[label] += sync["dur"]
    lines += ["", f"host syncs: {len(syncs) / steps:.1f} a step (count a step, host wait ms a step, where):"]
    lines += [f"{n / steps:5.1f} {waited[k] / 1e3 / steps:8.2f}  {k}" for k, n in where.most_common(25)]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("trace", help="chrome trace JSON from torch.profiler (with_stack=True)")
    p.add_argument("--steps", type=int, default=1, help="training steps the trace holds (for per-step figures)")
    a = p.parse_args()
    print("\n".join(analyse(json.loads(Path(a.trace).read_text()), a.steps)))


if __name__ == "__main__":
    main()
