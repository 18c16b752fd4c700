"""Tic-tac-toe rules and an exact minimax solver.

A board is a 9-character string over "X", "O" and "." read row by row; cells are numbered 1-9 in the
same order. X moves first, so the side to move follows from the counts of marks.
"""

from __future__ import annotations

from functools import lru_cache

EMPTY = "."
LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
# Preference among equally good moves: centre, corners, edges (0-based cells).
CELL_PREFERENCE = (4, 0, 2, 6, 8, 1, 3, 5, 7)
START = EMPTY * 9


def to_move(board: str) -> str:
    return "X" if board.count("X") == board.count("O") else "O"


def winner(board: str) -> str | None:
    for a, b, c in LINES:
        if board[a] != EMPTY and board[a] == board[b] == board[c]:
            return board[a]
    return None


def is_over(board: str) -> bool:
    return winner(board) is not None or EMPTY not in board


def legal_moves(board: str) -> list[int]:
    """0-based cells that are free, or none when the game is over."""
    if is_over(board):
        return []
    return [i for i, cell in enumerate(board) if cell == EMPTY]


def play(board: str, cell: int) -> str:
    if board[cell] != EMPTY or is_over(board):
        raise ValueError(f"cell {cell + 1} is not a legal move on {board}")
    return board[:cell] + to_move(board) + board[cell + 1 :]


@lru_cache(maxsize=None)
def score(board: str) -> int:
    """Exact game value for the side to move, shaded by speed.

    Positive: a win (larger = sooner), negative: a loss (closer to 0 = later), 0: a draw.
    """
    win = winner(board)
    if win is not None:
        # The previous mover won; the side to move has lost. Sooner losses score lower.
        return -(1 + board.count(EMPTY))
    if EMPTY not in board:
        return 0
    return max(-score(play(board, cell)) for cell in legal_moves(board))


def value(board: str) -> int:
    """Game-theoretic value for the side to move: 1 win, 0 draw, -1 loss."""
    s = score(board)
    return (s > 0) - (s < 0)


def move_values(board: str) -> dict[int, int]:
    """Game value (1/0/-1, for the side to move) of each legal move."""
    return {cell: -value(play(board, cell)) for cell in legal_moves(board)}


def optimal_moves(board: str) -> list[int]:
    """Every legal move that keeps the game-theoretic value of the position."""
    values = move_values(board)
    best = max(values.values())
    return [cell for cell, v in values.items() if v == best]


def best_move(board: str) -> int:
    """The perfect player's move: optimal, fastest win / slowest loss, then centre > corner > edge."""
    moves = legal_moves(board)
    best = max(-score(play(board, cell)) for cell in moves)
    candidates = [cell for cell in moves if -score(play(board, cell)) == best]
    return min(candidates, key=CELL_PREFERENCE.index)


def threats(board: str, player: str) -> list[int]:
    """Free cells where `player` would complete a line."""
    cells = []
    for line in LINES:
        marks = [board[i] for i in line]
        if marks.count(player) == 2 and marks.count(EMPTY) == 1:
            cells.append(line[marks.index(EMPTY)])
    return sorted(set(cells))


def reachable_positions() -> list[str]:
    """Every position reachable from the empty board in which the game is not over, in a fixed order."""
    seen: set[str] = set()
    order: list[str] = []
    frontier = [START]
    while frontier:
        board = frontier.pop()
        if board in seen or is_over(board):
            continue
        seen.add(board)
        order.append(board)
        frontier.extend(play(board, cell) for cell in legal_moves(board))
    return sorted(order, key=lambda b: (9 - b.count(EMPTY), b))
