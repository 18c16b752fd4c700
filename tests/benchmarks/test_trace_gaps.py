"""benchmarks/trace_gaps.py charges a GPU's idle time to the host code that ran during it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

from trace_gaps import analyse  # noqa: E402


def event(cat, name, ts, dur, tid=1):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "tid": tid}


def test_idle_time_is_charged_to_the_frames_running_then_and_syncs_to_their_caller():
    trace = {"traceEvents": [
        event("kernel", "gemm", 0, 1000, tid=7),
        event("kernel", "gemm", 1000, 500, tid=7),   # back to back: no gap
        event("kernel", "gemm", 3500, 500, tid=7),   # 2 ms gap before it
        event("python_function", "trainer.py(10): training_step", 0, 4000),
        event("python_function", "collate.py(5): collate", 1500, 1500),
        event("python_function", "trainer.py(20): metrics", 3000, 400),
        event("cuda_runtime", "cudaStreamSynchronize", 3100, 200),
    ]}
    lines = analyse(trace, steps=1)
    text = "\n".join(lines)
    assert "busy 50.0%" in text and "1 gaps" in text
    idle = lines[lines.index("GPU idle time by the host code running then (ms a step, innermost frame first):") + 1:]
    charged = {line.split(None, 1)[1]: float(line.split()[0]) for line in idle[:3]}
    assert charged == {"collate.py(5): collate < trainer.py(10): training_step": 1.5,
                       "trainer.py(20): metrics < trainer.py(10): training_step": 0.4,
                       "trainer.py(10): training_step": 0.1}
    assert "host syncs: 1.0 a step" in text
    assert lines[-1].split() == ["1.0", "0.20", "trainer.py(20):", "metrics", "<", "trainer.py(10):", "training_step"]
