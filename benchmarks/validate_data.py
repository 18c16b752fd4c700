"""Time to read, validate and convert a 100k-row data file (what happens before any model loads).

    python benchmarks/validate_data.py [rows]

Writes a JSON-lines file of each shape (prompt/completion for SFT, prompt/chosen/rejected for DPO, chat
messages for SFT), then times posttrain's load_data on it and prints rows/second.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from posttrain.data.loading import load_data
from posttrain.registry import get_method

LOCAL = Path(__file__).resolve().parents[1] / "conf" / "dataset" / "local.yaml"

SHAPES = {
    "prompt_completion": ("sft", lambda i: {"prompt": f"Question {i}: what is {i} + {i}?", "completion": f" {2 * i}"}),
    "preference": ("dpo", lambda i: {"prompt": f"Question {i}: what is {i} + {i}?", "chosen": f" {2 * i}",
                                     "rejected": f" {2 * i + 1}"}),
    "messages": ("sft", lambda i: {"messages": [{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": f"What is {i} + {i}?"},
                                                {"role": "assistant", "content": str(2 * i)}]}),
}


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        for shape, (method, make) in SHAPES.items():
            path = Path(folder) / f"{shape}.jsonl"
            path.write_text("".join(json.dumps(make(i)) + "\n" for i in range(rows)))
            cfg = OmegaConf.merge(OmegaConf.load(LOCAL), {"path": str(path), "eval_fraction": 0.01})
            started = time.perf_counter()
            data = load_data(cfg, get_method(method), seed=0)
            seconds = time.perf_counter() - started
            print(f"{shape:18s} {rows} rows ({path.stat().st_size / 1e6:.1f} MB) -> {data.describe()}: "
                  f"{seconds:.2f} s ({rows / seconds:,.0f} rows/s)")


if __name__ == "__main__":
    main()
