"""Built-in datasets, generated in process (no files, no network). Each returns rows of a requested form
for the train or eval split."""

from __future__ import annotations

from omegaconf import DictConfig

from posttrain.data.formats import unpair
from posttrain.errors import PosttrainError
from posttrain.tictactoe import dataset as tictactoe


def tictactoe_rows(cfg: DictConfig, form: str, split: str, seed: int) -> list[dict]:
    boards = tictactoe.positions(split, cfg.eval_fraction)
    if form == "completion":
        return tictactoe.sft_rows(boards, cfg.thoughts)
    if form == "preference":
        return tictactoe.preference_rows(boards, cfg.thoughts, cfg.pairs_per_position, seed, cfg.illegal_pairs)
    if form == "unpaired":
        return unpair(tictactoe.preference_rows(boards, cfg.thoughts, cfg.pairs_per_position, seed, cfg.illegal_pairs))
    if form == "prompt":
        return tictactoe.prompt_rows(boards)
    if form == "text":
        return tictactoe.text_rows(boards, cfg.thoughts)
    raise PosttrainError(f"the tictactoe dataset has no '{form}' form", "use dataset.form=auto")


BUILTINS = {"tictactoe": tictactoe_rows}


def builtin_rows(cfg: DictConfig, form: str, split: str, seed: int) -> list[dict]:
    if cfg.builtin not in BUILTINS:
        raise PosttrainError(
            f"unknown built-in dataset '{cfg.builtin}'", f"choose one of: {', '.join(sorted(BUILTINS))}"
        )
    return BUILTINS[cfg.builtin](cfg, form, split, seed)
