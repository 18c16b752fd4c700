"""The minimax solver is exact: known values, perfect self-play draws, optimal moves keep the value."""

import random

from posttrain.tictactoe import game


def test_empty_board_is_a_draw_and_every_first_move_keeps_it():
    assert game.value(game.START) == 0
    assert sorted(game.optimal_moves(game.START)) == list(range(9))
    assert game.best_move(game.START) == 4  # ties go to the centre


def test_immediate_win_and_forced_block():
    # X X . / O O . / . . .  X to move: 3 wins at once.
    assert game.best_move("XX.OO....") == 2
    assert game.value("XX.OO....") == 1
    # X . . / . O . / . . X  with O to move after X took opposite corners: O must not play a corner.
    board = "X...O...X"
    assert game.to_move(board) == "O"
    assert set(game.optimal_moves(board)) == {1, 3, 5, 7}


def test_there_are_4520_unfinished_reachable_positions():
    positions = game.reachable_positions()
    assert len(positions) == 4520
    assert len(set(positions)) == 4520
    assert all(not game.is_over(b) for b in positions)


def _play(x_policy, o_policy, rng):
    board = game.START
    while not game.is_over(board):
        policy = x_policy if game.to_move(board) == "X" else o_policy
        board = game.play(board, policy(board, rng))
    return game.winner(board)


def test_perfect_play_never_loses():
    rng = random.Random(0)
    perfect = lambda b, r: r.choice(game.optimal_moves(b))  # noqa: E731
    randomly = lambda b, r: r.choice(game.legal_moves(b))  # noqa: E731
    assert all(_play(perfect, perfect, rng) is None for _ in range(50))
    assert all(_play(perfect, randomly, rng) != "O" for _ in range(200))
    assert all(_play(randomly, perfect, rng) != "X" for _ in range(200))
