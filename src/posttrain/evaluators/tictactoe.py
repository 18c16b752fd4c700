"""The tic-tac-toe evaluator (eval=tictactoe): the model's move on every held-out position, and full games
against a random player and against a perfect player (who picks uniformly among optimal moves). The model
moves greedily; an unreadable or illegal move forfeits the game."""

from __future__ import annotations

import random

import torch

from posttrain.evaluators import EvalOutput, EvalRequest
from posttrain.progress import bar
from posttrain.tictactoe import dataset, game


@torch.no_grad()
def answers(model, tokenizer, boards: list[str], max_new_tokens: int, batch_size: int = 64,
            description: str = "") -> list[str]:
    """The model's greedy answer to each board's question (a progress bar named `description` on a terminal)."""
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    texts: list[str] = []
    progress = bar(len(boards), description, "position") if description else None
    try:
        for start in range(0, len(boards), batch_size):
            chunk = boards[start : start + batch_size]
            batch = tokenizer([dataset.prompt_for(b) for b in chunk], return_tensors="pt", padding=True)
            batch = {k: v.to(model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            texts += tokenizer.batch_decode(output[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            if progress is not None:
                progress.update(len(chunk))
    finally:
        if progress is not None:
            progress.close()
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return texts


def choose_moves(model, tokenizer, boards: list[str], max_new_tokens: int) -> list[int | None]:
    """The model's move (0-based cell, or None if it named none) for each board, by greedy decoding."""
    return [dataset.parse_move(text) for text in answers(model, tokenizer, boards, max_new_tokens)]


def move_quality(boards: list[str], moves: list[int | None]) -> dict[str, float]:
    legal = [m is not None and m in game.legal_moves(b) for b, m in zip(boards, moves)]
    optimal = [ok and m in game.optimal_moves(b) for b, m, ok in zip(boards, moves, legal)]
    return {
        "legal_move_rate": sum(legal) / len(boards),
        "optimal_move_rate": sum(optimal) / len(boards),
    }


def play_games(model, tokenizer, opponent: str, games: int, max_new_tokens: int, seed: int) -> dict[str, float]:
    """Win/draw/loss rates of the model over `games` games, playing X in the first half and O in the rest."""
    rng = random.Random(seed)
    boards = [game.START] * games
    progress = bar(games, f"games vs {opponent}", "game")
    model_side = ["X" if i < (games + 1) // 2 else "O" for i in range(games)]
    outcome: list[str | None] = [None] * games
    while any(o is None for o in outcome):
        to_model = [i for i in range(games) if outcome[i] is None and game.to_move(boards[i]) == model_side[i]]
        moves = choose_moves(model, tokenizer, [boards[i] for i in to_model], max_new_tokens) if to_model else []
        for i, move in zip(to_model, moves):
            if move is None or move not in game.legal_moves(boards[i]):
                outcome[i] = "forfeit"
            else:
                boards[i] = game.play(boards[i], move)
        for i in range(games):
            if outcome[i] is None and not game.is_over(boards[i]) and game.to_move(boards[i]) != model_side[i]:
                choices = game.legal_moves(boards[i]) if opponent == "random" else game.optimal_moves(boards[i])
                boards[i] = game.play(boards[i], rng.choice(choices))
            if outcome[i] is None and game.is_over(boards[i]):
                win = game.winner(boards[i])
                outcome[i] = "draw" if win is None else ("win" if win == model_side[i] else "loss")
        progress.update(sum(o is not None for o in outcome) - progress.n)
    progress.close()
    return {
        f"vs_{opponent}_win_rate": outcome.count("win") / games,
        f"vs_{opponent}_draw_rate": outcome.count("draw") / games,
        f"vs_{opponent}_loss_rate": (outcome.count("loss") + outcome.count("forfeit")) / games,
        f"vs_{opponent}_forfeit_rate": outcome.count("forfeit") / games,
    }


def evaluate(model, tokenizer, request: EvalRequest) -> EvalOutput:
    """Every held-out position of the dataset's split (request.limit of them at most) and eval.games games
    against each opponent (at most request.limit)."""
    data = request.dataset
    max_new_tokens = 80 if data.thoughts else 12
    boards = dataset.positions("eval", data.eval_fraction)
    limit = request.limit if request.limit is not None else request.settings.get("limit")
    games = int(request.settings.get("games", 100))
    if limit is not None and int(limit) < len(boards):  # a seeded subset, the same one at every evaluation
        boards = random.Random(request.seed).sample(boards, int(limit))
    if limit is not None:
        games = min(games, int(limit))
    texts = answers(model, tokenizer, boards, max_new_tokens, description="held-out positions")
    moves = [dataset.parse_move(text) for text in texts]
    results = {"eval_positions": len(boards), "games_per_opponent": games}
    results.update(move_quality(boards, moves))
    for opponent in ("random", "perfect"):
        if games:
            results.update(play_games(model, tokenizer, opponent, games, max_new_tokens, request.seed))
    samples = [{"prompt": dataset.prompt_for(board), "completion": text, "move": move,
                "legal": move is not None and move in game.legal_moves(board),
                "optimal": move is not None and move in game.optimal_moves(board)}
               for board, text, move in zip(boards, texts, moves)]
    return EvalOutput(results, samples)
