"""Built-in tic-tac-toe data, generated exactly by the minimax solver in `game`.

Every reachable unfinished position becomes one prompt. A fixed, hash-based fraction of positions is
held out for evaluation, so no held-out position is ever trained on, whatever the method.

Rows produced, by the form a method needs:
- prompt/completion (SFT): the completion is an optimal move, optionally after a templated thought;
- prompt/chosen/rejected (DPO, reward models, ...): an optimal move over a legal non-optimal one;
- prompt/completion/label (KTO): optimal moves labelled true, legal non-optimal moves false;
- prompt (online RL): the position alone, with the board kept for the rules reward;
- text (pretraining): prompt and optimal completion as one document.
"""

from __future__ import annotations

import hashlib
import random

from posttrain.tictactoe import game

MOVE_PREFIX = "Move: "


def render_board(board: str) -> str:
    """Three rows; a free cell shows its number, so a legal move is a digit on the board."""
    cells = [mark if mark != game.EMPTY else str(i + 1) for i, mark in enumerate(board)]
    return "\n".join("|".join(cells[i : i + 3]) for i in (0, 3, 6))


def prompt_for(board: str) -> str:
    """The question asked for a position (plain text; chat models get it as a user turn)."""
    return f"Tic-tac-toe. You are {game.to_move(board)}.\n{render_board(board)}\n"


def thought_for(board: str, cell: int) -> str:
    """A short templated reason for playing `cell` (0-based), in the tic-tac-toe guide's style."""
    me = game.to_move(board)
    them = "O" if me == "X" else "X"
    if cell in game.threats(board, me):
        return f"Thought: {cell + 1} completes my line."
    blocks = game.threats(board, them)
    if cell in blocks:
        return f"Thought: block {them} at {cell + 1}."
    if cell == 4:
        return "Thought: take the centre."
    if cell in (0, 2, 6, 8):
        return f"Thought: corner {cell + 1} is safe."
    return f"Thought: edge {cell + 1} is safe."


def completion_for(board: str, cell: int, thoughts: bool) -> str:
    answer = f"{MOVE_PREFIX}{cell + 1}"
    return f"{thought_for(board, cell)}\n{answer}" if thoughts else answer


def parse_move(text: str) -> int | None:
    """The 0-based cell a completion names: the digit after the last "Move:", else the first digit."""
    tail = text.rsplit(MOVE_PREFIX.strip(), 1)[-1] if MOVE_PREFIX.strip() in text else text
    for char in tail:
        if char in "123456789":
            return int(char) - 1
    return None


def is_held_out(board: str, eval_fraction: float) -> bool:
    digest = hashlib.sha256(board.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < eval_fraction


def positions(split: str, eval_fraction: float) -> list[str]:
    """Unfinished positions of one split ("train" or "eval"), in a fixed order."""
    held_out = split == "eval"
    return [b for b in game.reachable_positions() if is_held_out(b, eval_fraction) == held_out]


def sft_rows(boards: list[str], thoughts: bool) -> list[dict]:
    return [
        {"prompt": prompt_for(b), "completion": completion_for(b, game.best_move(b), thoughts), "board": b}
        for b in boards
    ]


def preference_rows(boards: list[str], thoughts: bool, pairs_per_position: int, seed: int) -> list[dict]:
    """Optimal (chosen) over legal non-optimal (rejected) moves, for positions that have a non-optimal move."""
    rng = random.Random(seed)
    rows = []
    for b in boards:
        good = game.best_move(b)
        bad = sorted(set(game.legal_moves(b)) - set(game.optimal_moves(b)))
        for cell in rng.sample(bad, min(pairs_per_position, len(bad))):
            rows.append(
                {
                    "prompt": prompt_for(b),
                    "chosen": completion_for(b, good, thoughts),
                    "rejected": completion_for(b, cell, thoughts),
                    "board": b,
                }
            )
    return rows


def unpaired_rows(boards: list[str], thoughts: bool, pairs_per_position: int, seed: int) -> list[dict]:
    """KTO rows: each preference pair split into a desirable and an undesirable completion."""
    rows = []
    for pair in preference_rows(boards, thoughts, pairs_per_position, seed):
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True, "board": pair["board"]})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False, "board": pair["board"]})
    return rows


def prompt_rows(boards: list[str]) -> list[dict]:
    return [{"prompt": prompt_for(b), "board": b} for b in boards]


def text_rows(boards: list[str], thoughts: bool) -> list[dict]:
    return [{"text": row["prompt"] + row["completion"]} for row in sft_rows(boards, thoughts)]
