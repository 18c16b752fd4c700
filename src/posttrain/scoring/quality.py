"""criterion=quality: a candidate's score is the number in the input's score column (columns.score);
the highest-scored candidate becomes chosen, the lowest rejected."""

from __future__ import annotations

from omegaconf import DictConfig

from posttrain.scoring.candidates import Prompt


def quality_scores(prompts: list[Prompt], cfg: DictConfig, device: str) -> list[list[float]]:
    return [list(prompt.scores) for prompt in prompts]
