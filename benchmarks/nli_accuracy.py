"""Does SFT teach SmolLM2-135M the NLI sample? Dev accuracy and macro-F1 of the base model and of the model
after SFT, both by the classification evaluator (eval=classification: each dev row's most likely label).

    HF_HUB_OFFLINE=1 python benchmarks/nli_accuracy.py [overrides of the SFT run ...]

The base model is scored in this process; the SFT run is `python -m posttrain` in a scratch directory (its
final evaluation writes the same metrics to results.json). Offline, on CPU, in a few minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from posttrain.evaluators import EvalRequest, classification
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.naming import register_resolvers

# three epochs of the 120-row sample (12 steps, under one epoch, left the base's accuracy unchanged)
SFT = ["experiment=nli_qlora_minimal_test", "model=smollm2-135m", "learning_rate=5e-4", "max_steps=45",
       "lora_rank=16", "training.eval_steps=0", "run_name=nli_sft"]
KEYS = ("label_accuracy", "label_macro_f1", "labelled_rows")


def base_model_metrics(overrides: list[str]) -> dict:
    register_resolvers()
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, tokenizer, torch.float32)
    request = EvalRequest(OmegaConf.to_container(cfg.eval, resolve=True), cfg.dataset, int(cfg.seed))
    return classification.evaluate(model, tokenizer, request).metrics


def row(name: str, metrics: dict, seconds: float, command: str) -> str:
    figures = " | ".join(f"{metrics[k]:.3f}" if isinstance(metrics[k], float) else str(metrics[k]) for k in KEYS)
    return f"| {name} | {figures} | {seconds:.0f} | `{command}` |"


def main() -> None:
    sft = SFT + sys.argv[1:]
    start = time.time()
    base = base_model_metrics(sft)  # the model is freed on return, before the SFT run loads its own
    base_seconds = time.time() - start
    print("base:", {k: base[k] for k in KEYS}, f"{base_seconds:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.time()
        run = subprocess.run([sys.executable, "-m", "posttrain", *sft], cwd=scratch, capture_output=True, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
        sft_seconds = time.time() - start
        if run.returncode:
            sys.exit(run.stderr[-3000:])
        tuned = json.loads((Path(scratch) / "outputs" / "nli_sft" / "results.json").read_text())
    print("| model | dev accuracy | dev macro-F1 | dev rows | seconds | command |")
    print("|---|---|---|---|---|---|")
    print(row("SmolLM2-135M-Instruct (base)", base, base_seconds,
              "classification.evaluate on the base model (benchmarks/nli_accuracy.py)"))
    print(row("after SFT (LoRA)", tuned, sft_seconds, "python -m posttrain " + " ".join(sft)))
    print("confusion (gold -> predicted): base", json.dumps(base["label_confusion"]),
          "| after SFT", json.dumps(tuned["label_confusion"]))


if __name__ == "__main__":
    main()
