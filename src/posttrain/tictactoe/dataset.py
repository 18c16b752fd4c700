"""Built-in tic-tac-toe data, generated exactly by the minimax solver in `game`.

Every reachable unfinished position becomes one prompt. A fixed, hash-based fraction of positions is
held out for evaluation, so no held-out position is ever trained on, whatever the method.

The prompt shows the side to move and the board, free cells by their number:

    X to play
    X|2|O
    4|X|6
    7|8|O

The completion is the move ("Move: 6"), optionally after a templated thought in the tic-tac-toe guide's
style that reads the eight lines (rows, columns, diagonals), marks each open threat ("+c": the side to
move wins at c; "-c": it must block c) and names the decision. For the board above:

    Lines X2O 4X6 78O X47 2X8 O6O-6 XXO OX7. Block at 6.
    Move: 6

Rows produced, by the form a method needs:
- completion (SFT): the perfect player's move;
- preference (DPO, reward models, ...): that move over a legal non-optimal one;
- unpaired (KTO): the preference pairs split in two (posttrain.data.formats.unpair): optimal moves labelled
  true, legal non-optimal moves false;
- prompt (online RL): the position alone, with the board kept for the rules reward;
- text (pretraining): prompt and completion as one document.
"""

from __future__ import annotations

import hashlib
import random

from posttrain.tictactoe import game

MOVE_PREFIX = "Move:"


def render_board(board: str) -> str:
    """Three rows; a free cell shows its number, so a legal move is a digit on the board."""
    cells = [mark if mark != game.EMPTY else str(i + 1) for i, mark in enumerate(board)]
    return "\n".join("|".join(cells[i : i + 3]) for i in (0, 3, 6))


def prompt_for(board: str) -> str:
    """The question asked for a position (plain text; chat models get it as a user turn)."""
    return f"{game.to_move(board)} to play\n{render_board(board)}\n"


def _line_note(board: str, line: tuple[int, int, int]) -> str:
    """A line's three cells, then +c if the side to move wins at c, or -c if it must block c."""
    me = game.to_move(board)
    marks = [board[i] for i in line]
    text = "".join(mark if mark != game.EMPTY else str(i + 1) for i, mark in zip(line, marks))
    if marks.count(game.EMPTY) == 1:
        free = line[marks.index(game.EMPTY)] + 1
        if marks.count(me) == 2:
            return f"{text}+{free}"
        if marks.count(me) == 0:
            return f"{text}-{free}"
    return text


def thought_for(board: str, cell: int) -> str:
    """The templated reasoning before playing `cell` (0-based)."""
    me = game.to_move(board)
    them = "O" if me == "X" else "X"
    lines = " ".join(_line_note(board, line) for line in game.LINES)
    if cell in game.threats(board, me):
        decision = f"Win at {cell + 1}."
    elif cell in game.threats(board, them):
        decision = f"Block at {cell + 1}."
    else:
        decision = "No threats."
    return f"Lines {lines}. {decision}"


def completion_for(board: str, cell: int, thoughts: bool, thought_cell: int | None = None) -> str:
    """The move `cell`, after the thought that leads to `thought_cell` (default: the same cell)."""
    answer = f"{MOVE_PREFIX} {cell + 1}"
    if not thoughts:
        return answer
    return f"{thought_for(board, cell if thought_cell is None else thought_cell)}\n{answer}"


def parse_move(text: str) -> int | None:
    """The 0-based cell a completion names: the first digit after its first "Move:" (the whole text when
    it has none), or None."""
    tail = text.split(MOVE_PREFIX, 1)[1] if MOVE_PREFIX in text else text
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


def preference_rows(
    boards: list[str], thoughts: bool, pairs_per_position: int, seed: int, illegal_pairs: bool = False
) -> list[dict]:
    """The optimal move (chosen) over up to `pairs_per_position` legal non-optimal moves (rejected); with
    `illegal_pairs`, also over one occupied cell per position, so preference training that pushes legal
    mistakes down cannot shift their probability onto illegal moves.

    Both completions share the chosen move's thought, so a pair differs only in the move it ends with:
    the preference is about the move, and DPO does not learn to distrust the thought's wording."""
    rng = random.Random(seed)
    rows = []
    for b in boards:
        good = game.best_move(b)
        bad = sorted(set(game.legal_moves(b)) - set(game.optimal_moves(b)))
        picks = rng.sample(bad, min(pairs_per_position, len(bad)))
        occupied = [i for i, mark in enumerate(b) if mark != game.EMPTY]
        if illegal_pairs and occupied:
            picks.append(rng.choice(occupied))
        for cell in picks:
            rows.append(
                {
                    "prompt": prompt_for(b),
                    "chosen": completion_for(b, good, thoughts),
                    "rejected": completion_for(b, cell, thoughts, thought_cell=good),
                    "board": b,
                }
            )
    return rows


def prompt_rows(boards: list[str]) -> list[dict]:
    return [{"prompt": prompt_for(b), "board": b} for b in boards]


def text_rows(boards: list[str], thoughts: bool) -> list[dict]:
    return [{"text": row["prompt"] + row["completion"]} for row in sft_rows(boards, thoughts)]
