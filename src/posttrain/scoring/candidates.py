"""The pair builder's input: prompts with several candidate responses each, read and checked before any
model loads.

Two layouts, told apart by the responses column of the first row:
- list form: one row per prompt, `responses` a list of texts (and for criterion=quality, `score` a list of
  numbers parallel to it);
- long form: one row per candidate, `responses` one text (and `score` one number); rows with the same
  prompt text are one prompt's candidates.
Candidates of the same prompt text are gathered across rows in either form, in file order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from posttrain.data.files import TABLE_EXTENSIONS, Row, read_rows, row_label
from posttrain.errors import PosttrainError


@dataclass
class Prompt:
    text: str
    responses: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # criterion=quality only


@dataclass
class Candidates:
    path: Path
    prompts: list[Prompt]  # the usable ones: at least two candidates each
    too_few: int  # prompts skipped for having fewer than two candidates
    bad_rows: list[str]  # rows skipped with skip_bad_rows=true

    @property
    def count(self) -> int:
        return sum(len(p.responses) for p in self.prompts)


class BadRow(Exception):
    """A row that cannot be used; the message names the field and what is wrong."""


def builtin_input() -> Path:
    """The example candidates shipped with posttrain (20 prompts x 4 candidates with quality scores)."""
    return Path(str(files("posttrain.data") / "examples" / "candidates.jsonl"))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"{what} is {'empty' if isinstance(value, str) else repr(value)}, not text")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, str):  # CSV cells are text
        try:
            value = float(value)
        except ValueError:
            raise BadRow(f"{what} is {value!r}, not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise BadRow(f"{what} is {value!r}, not a number")
    return float(value)


def _row_candidates(values: dict, columns: DictConfig, list_form: bool, with_scores: bool) -> tuple[str, list, list]:
    prompt = _text(values.get(columns.prompt), f"'{columns.prompt}'")
    raw = values.get(columns.responses)
    if list_form:
        if not isinstance(raw, list):
            raise BadRow(f"'{columns.responses}' is {type(raw).__name__}, not a list of texts")
        responses = [_text(r, f"'{columns.responses}' item {i}") for i, r in enumerate(raw, start=1)]
    else:
        responses = [_text(raw, f"'{columns.responses}'")]
    if not with_scores:
        return prompt, responses, []
    raw_scores = values.get(columns.score)
    if list_form:
        if not isinstance(raw_scores, list) or len(raw_scores) != len(responses):
            raise BadRow(f"'{columns.score}' must be a list of {len(responses)} numbers, one per response, got {raw_scores!r}")
        scores = [_number(s, f"'{columns.score}' item {i}") for i, s in enumerate(raw_scores, start=1)]
    else:
        scores = [_number(raw_scores, f"'{columns.score}'")]
    return prompt, responses, scores


def _check_columns(path: Path, first: Row, columns: DictConfig, with_scores: bool) -> None:
    needed = [("prompt", columns.prompt), ("responses", columns.responses)]
    if with_scores:
        needed.append(("score", columns.score))
    for key, name in needed:
        if name not in first.values:
            have = ", ".join(first.values) or "none"
            raise PosttrainError(
                f"{path} has no column '{name}' (its columns: {have})",
                f"set columns.{key}=<your column>" + (" (criterion=quality reads the candidates' scores)" if key == "score" else ""),
            )


def read_candidates(cfg: DictConfig, with_scores: bool) -> Candidates:
    path = Path(str(cfg.input)).expanduser() if cfg.input else builtin_input()
    if path.suffix not in TABLE_EXTENSIONS:
        raise PosttrainError(f"input {path} has an unknown extension '{path.suffix}'", f"use one of {', '.join(TABLE_EXTENSIONS)}")
    if not path.is_file():
        raise PosttrainError(f"input file {path} does not exist", "set input=<candidates file (.jsonl, .json, .parquet or .csv)>")
    skip = bool(cfg.skip_bad_rows)
    bad_rows: list[str] = []
    try:
        rows = read_rows(str(path), skip, bad_rows)
    except PosttrainError as error:  # its fixes name the training command's keys
        raise PosttrainError(error.problem, error.fix.replace("dataset.path", "input").replace("dataset.", "")) from None
    _check_columns(path, rows[0], cfg.columns, with_scores)
    list_form = isinstance(rows[0].values.get(cfg.columns.responses), list)
    prompts: dict[str, Prompt] = {}
    for row in rows:
        try:
            text, responses, scores = _row_candidates(row.values, cfg.columns, list_form, with_scores)
        except BadRow as bad:
            problem = f"{row_label(path, row.number)}: {bad}"
            if skip:
                bad_rows.append(problem)
                continue
            layout = "a list of texts per row" if list_form else "one text per row"
            raise PosttrainError(problem, f"fix that row (this file gives {layout}), or set skip_bad_rows=true to skip bad rows") from None
        prompt = prompts.setdefault(text, Prompt(text))
        prompt.responses += responses
        prompt.scores += scores
    usable = [p for p in prompts.values() if len(p.responses) >= 2]
    if not usable:
        raise PosttrainError(
            f"no prompt in {path} has two or more candidate responses ({len(prompts)} prompts)",
            "give each prompt at least two responses (a list per row, or several rows with the same prompt)",
        )
    return Candidates(path, usable, too_few=len(prompts) - len(usable), bad_rows=bad_rows)
