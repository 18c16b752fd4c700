"""The bad-input table: each mistake's one-line message, exit status and time to fail, as a Markdown table.

    python benchmarks/bad_inputs.py

Runs `python -m posttrain` in a scratch directory once per case (offline) and prints one row per case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def files(root: Path) -> dict[str, str]:
    made = {
        "empty.jsonl": b"",
        "broken.jsonl": b'{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n',
        "latin1.jsonl": b'{"prompt": "caf\xe9", "completion": "b"}\n',
        "data.txt": b"hello",
        "nulls.jsonl": b'{"prompt": "a", "completion": "b"}\n{"prompt": null, "completion": "b"}\n',
        "sft.jsonl": b'{"prompt": "a", "completion": "b"}\n',
        "other.csv": b"question,answer\na,b\n",
    }
    for name, content in made.items():
        (root / name).write_bytes(content)
    return {name: str(root / name) for name in made}


def cases(paths: dict[str, str], root: Path) -> list[tuple[str, list[str]]]:
    blocker = root / "a_file"  # a file where a directory is needed: cannot be written even as root
    blocker.write_text("x")
    return [
        ("unknown group option", ["model=foo"]),
        ("misspelled key", ["learning_rat=1e-3"]),
        ("wrong type", ["learning_rate=abc"]),
        ("dpo_beta=-1", ["method=dpo", "dpo_beta=-1"]),
        ("batch_size=0", ["batch_size=0"]),
        ("learning_rate=0", ["learning_rate=0"]),
        ("max_steps=-5", ["max_steps=-5"]),
        ("missing named dataset file", ["method=dpo", "dataset=embedding_diversity"]),
        ("missing local file", ["method=sft", "dataset=local", "dataset.path=nope.jsonl"]),
        ("empty file", ["method=sft", "dataset=local", f"dataset.path={paths['empty.jsonl']}"]),
        ("broken JSON line", ["method=sft", "dataset=local", f"dataset.path={paths['broken.jsonl']}"]),
        ("not UTF-8", ["method=sft", "dataset=local", f"dataset.path={paths['latin1.jsonl']}"]),
        ("unknown extension", ["method=sft", "dataset=local", f"dataset.path={paths['data.txt']}"]),
        ("null field", ["method=sft", "dataset=local", f"dataset.path={paths['nulls.jsonl']}"]),
        ("wrong format for method", ["method=dpo", "dataset=local", f"dataset.path={paths['sft.jsonl']}"]),
        ("unknown columns", ["method=sft", "dataset=local", f"dataset.path={paths['other.csv']}"]),
        ("model path does not exist", ["method=sft", "model.path=/no/such/model"]),
        ("hardware=gpu without a GPU", ["hardware=gpu"]),
        ("peft=qlora on CPU", ["method=sft", "peft=qlora", "lora_rank=8"]),
        ("output dir not writable", ["method=sft", f"hydra.run.dir={blocker}/run"]),
        ("unknown method", ["method=ppo"]),
        ("distill without teacher", ["method=distill"]),
        ("preset needs a value", ["experiment=tictactoe_dpo"]),
    ]


def main() -> None:
    wanted = sys.argv[1:]  # case names to run (all when none)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    print("| case | exit | seconds | message |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, args in cases(files(root), root):
            if wanted and name not in wanted:
                continue
            started = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "posttrain", *args], cwd=root, env=env,
                                    capture_output=True, text=True, timeout=600)
            seconds = time.perf_counter() - started
            lines = [l for l in result.stderr.strip().splitlines() if l.startswith("posttrain: error")]
            message = lines[-1] if lines else json.dumps(result.stderr.strip().splitlines()[-1:])
            print(f"| {name} | {result.returncode} | {seconds:.1f} | `{message.replace(str(root), '.')}` |", flush=True)


if __name__ == "__main__":
    main()
