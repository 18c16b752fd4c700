"""Reward functions for the online methods (GRPO, RLOO), chosen by name in the method config:

    rewards:
      - {name: tictactoe, weight: 1.0}
      - {name: format, weight: 0.2, pattern: "Move: [1-9]\\s*$"}

Each builder below takes the entry's other fields and returns a TRL reward function
(`f(prompts, completions, **dataset_columns) -> list[float]`) or a reward model; registry.REWARDS maps
names to builders. Dataset columns other than the prompt (tic-tac-toe's `board`, an `answer` column)
reach the functions as keyword arguments.
"""

from __future__ import annotations

import re

from posttrain.errors import PosttrainError


def columns_read(entry: dict) -> tuple[str, ...]:
    """The dataset columns a method.rewards entry reads (checked against the data before a model loads):
    tictactoe reads `board`, exact_match its `column`; format and reward_model read only the completion."""
    name = entry.get("name")
    if name == "tictactoe":
        return ("board",)
    if name == "exact_match":
        return (str(entry.get("column") or "answer"),)
    return ()


def _text(completion) -> str:
    """A completion as text (conversational completions are a list with one assistant message)."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def tictactoe_rules(**_unused):
    """1 for an optimal move, 0 for a legal non-optimal one, -1 for an occupied cell or no move; reads
    the position from the dataset's `board` column."""
    from posttrain.tictactoe import game
    from posttrain.tictactoe.dataset import parse_move

    def tictactoe(prompts, completions, board, **kwargs) -> list[float]:
        rewards = []
        for text, position in zip(completions, board):
            cell = parse_move(_text(text))
            if cell is None or cell not in game.legal_moves(position):
                rewards.append(-1.0)
            else:
                rewards.append(1.0 if cell in game.optimal_moves(position) else 0.0)
        return rewards

    return tictactoe


def format_match(pattern: str = r"Move: [1-9]\s*$", **_unused):
    """1 when the completion matches `pattern` (re.search, DOTALL), else 0."""
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as err:
        raise PosttrainError(f"format reward pattern {pattern!r} is not a valid regex ({err})", "fix its pattern") from None

    def format(prompts, completions, **kwargs) -> list[float]:  # noqa: A001 - TRL names the metric after it
        return [1.0 if compiled.search(_text(c)) else 0.0 for c in completions]

    return format


def exact_match(column: str = "answer", answer_prefix: str | None = None, **_unused):
    """1 when the completion's answer equals the row's reference `column` (both stripped); with
    `answer_prefix`, the answer is the text after its last occurrence (e.g. "Move:"), else the whole completion."""

    def exact_match(prompts, completions, **kwargs) -> list[float]:
        if column not in kwargs:
            raise PosttrainError(
                f"the exact_match reward needs a '{column}' column in the dataset (it has: {', '.join(sorted(kwargs))})",
                "add that column, or set the reward's column=<your reference column>",
            )
        rewards = []
        for completion, reference in zip(completions, kwargs[column]):
            text = _text(completion)
            if answer_prefix:
                text = text.rsplit(answer_prefix, 1)[1] if answer_prefix in text else ""
            rewards.append(1.0 if text.strip() == str(reference).strip() else 0.0)
        return rewards

    return exact_match


def reward_model(path: str | None = None, **_unused):
    """A trained reward model (a `method=reward` run directory or its final/) scoring prompt + completion."""
    from posttrain.models.loading import load_trained

    if not path:
        raise PosttrainError("the reward_model reward has no path", "set its path to a method=reward run directory")
    return load_trained(str(path), head="sequence_classification")
