"""Pairs from scored candidates: each criterion scores every candidate of a prompt (higher = preferred);
chosen = the highest-scored candidate, rejected = the lowest (the first one on equal scores), and a prompt
whose candidates all score the same is skipped and counted. The pair file is written atomically."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from posttrain.errors import PosttrainError
from posttrain.scoring.candidates import Candidates, Prompt, read_candidates
from posttrain.scoring.embedding import embedder_source, embedding_scores
from posttrain.scoring.judge import judge_model_config, judge_scores
from posttrain.scoring.quality import quality_scores

# Scores closer than this count as equal (floating-point noise of the embedder and judge).
TIE = 1e-9


@dataclass(frozen=True)
class Criterion:
    name: str
    dataset: str  # conf/dataset/<dataset>.yaml trains on data/<dataset>.parquet
    check: Callable[[DictConfig], object]  # what can be checked before a model loads
    score: Callable[[list[Prompt], DictConfig, str], list[list[float]]]  # (prompts, cfg, device)
    needs_scores: bool = False  # reads columns.score from the input
    loads_model: bool = True  # runs a model on `device`


CRITERIA = {
    "embedding": Criterion("embedding", "embedding_diversity", embedder_source, embedding_scores),
    "quality": Criterion("quality", "quality_based", lambda cfg: None, quality_scores, needs_scores=True, loads_model=False),
    "llm_judge": Criterion("llm_judge", "llm_judge_diversity", judge_model_config, judge_scores),
}


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise PosttrainError(f"unknown criterion '{name}'", f"choose one of: {', '.join(CRITERIA)}")
    return CRITERIA[name]


def output_path(cfg: DictConfig, criterion: Criterion) -> Path:
    path = Path(str(cfg.output)).expanduser() if cfg.output else Path("data") / f"{criterion.dataset}.parquet"
    if path.suffix != ".parquet":
        raise PosttrainError(f"output {path} is not a .parquet file", f"set output=<name>.parquet (default data/{criterion.dataset}.parquet)")
    if path.is_dir():
        raise PosttrainError(f"output {path} is a directory", "set output=<file>.parquet")
    return path


def device_name(cfg: DictConfig) -> str:
    import torch

    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise PosttrainError(f"device={cfg.device} but no CUDA device is available", "set device=auto or device=cpu")
    return str(cfg.device)


def pick_pairs(prompts: list[Prompt], scores: list[list[float]], criterion: str) -> tuple[list[dict], int]:
    """One pair per prompt (highest vs lowest score) and how many prompts were skipped as ties."""
    rows, ties = [], 0
    for prompt, prompt_scores in zip(prompts, scores):
        best = max(range(len(prompt_scores)), key=lambda i: prompt_scores[i])
        worst = min(range(len(prompt_scores)), key=lambda i: prompt_scores[i])
        if prompt_scores[best] - prompt_scores[worst] <= TIE:
            ties += 1
            continue
        rows.append({
            "prompt": prompt.text, "chosen": prompt.responses[best], "rejected": prompt.responses[worst],
            "chosen_score": float(prompt_scores[best]), "rejected_score": float(prompt_scores[worst]),
            "criterion": criterion,
        })
    return rows, ties


def write_parquet(rows: list[dict], path: Path) -> None:
    """Replace `path` so that readers see the old file or the new one, never a part."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def _skipped(candidates: Candidates, ties: int) -> str:
    """What was left out, e.g. '2 prompts with fewer than 2 candidates, 1 tied prompt'; '' when nothing."""
    parts = [
        f"{_count(candidates.too_few, 'prompt')} with fewer than 2 candidates" if candidates.too_few else "",
        f"{_count(ties, 'tied prompt')} (all candidates score the same)" if ties else "",
        _count(len(candidates.bad_rows), "bad row") if candidates.bad_rows else "",
    ]
    return ", ".join(p for p in parts if p)


def build_pairs(cfg: DictConfig) -> tuple[Path, list[dict]]:
    """Check everything that needs no model, score the candidates, write the pairs; returns (file, rows)."""
    criterion = get_criterion(str(cfg.criterion))
    path = output_path(cfg, criterion)
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise PosttrainError(f"batch_size must be an integer > 0, got {cfg.batch_size!r}", "set batch_size=16")
    candidates = read_candidates(cfg, with_scores=criterion.needs_scores)
    criterion.check(cfg)
    device = device_name(cfg) if criterion.loads_model else "cpu"
    scores = criterion.score(candidates.prompts, cfg, device)
    rows, ties = pick_pairs(candidates.prompts, scores, criterion.name)
    if not rows:
        raise PosttrainError(
            f"no pairs: every prompt of {candidates.path} was skipped ({_skipped(candidates, ties)})",
            "give each prompt at least two candidates that differ under the criterion",
        )
    write_parquet(rows, path)
    skipped = _skipped(candidates, ties)
    print(f"wrote {len(rows)} pairs to {path} (criterion {criterion.name}, {len(candidates.prompts)} prompts with "
          f"{candidates.count} candidates" + (f"; skipped {skipped})" if skipped else ")"))
    if path == Path("data") / f"{criterion.dataset}.parquet":
        print(f"train on it with: python -m posttrain method=dpo dataset={criterion.dataset}")
    for problem in candidates.bad_rows[:3]:
        print(f"skipped {problem}", file=sys.stderr)
    return path, rows
