"""conf/dataset/ -> the train and eval datasets a method's trainer gets, validated before any model loads."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from posttrain.checks import looks_local
from posttrain.data.builtin import builtin_rows
from posttrain.data.files import read_source
from posttrain.data.formats import convert_rows
from posttrain.errors import PosttrainError
from posttrain.registry import Method

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    train: Dataset
    eval: Dataset | None
    source_format: str = "built-in"
    skipped: list[str] = field(default_factory=list)

    @property
    def conversational(self) -> bool:
        first = self.train[0]
        return "messages" in first or isinstance(first.get("prompt"), list)

    def describe(self) -> str:
        eval_rows = len(self.eval) if self.eval is not None else 0
        text = f"{self.source_format} data, {len(self.train)} train / {eval_rows} eval rows"
        return text + (f", {len(self.skipped)} bad rows skipped" if self.skipped else "")


def dataset_form(cfg: DictConfig, method: Method) -> str:
    form = cfg.get("form", "auto")
    if form in (None, "auto"):
        return method.form
    if form != method.form:
        raise PosttrainError(
            f"dataset {cfg.name} holds {form} rows but method {method.name} trains on {method.form} rows "
            f"({', '.join(method.fields)})",
            f"pick a dataset with {method.form} rows, or a method that trains on {form} rows",
        )
    return form


def _missing_file_error(cfg: DictConfig, path: str) -> PosttrainError:
    hint = cfg.get("missing_hint") or "check dataset.path"
    return PosttrainError(f"dataset file {path} does not exist (dataset={cfg.name})", hint)


def check_dataset_config(cfg: DictConfig, method: Method) -> None:
    """What can be known about the data without reading it: form, and that files exist."""
    dataset_form(cfg, method)
    if cfg.get("builtin"):
        if cfg.get("path"):
            raise PosttrainError(
                f"dataset={cfg.name} is built in and reads no file, but dataset.path={cfg.path} was given",
                f"use dataset=local dataset.path={cfg.path} to train on that file",
            )
        return
    if not cfg.get("path"):
        raise PosttrainError(f"dataset {cfg.name} has no path", "set dataset.path=<file .jsonl/.json/.parquet/.csv>")
    for key in ("path", "eval_path"):
        path = cfg.get(key)
        if path and looks_local(str(path)) and not Path(str(path)).expanduser().exists():
            raise _missing_file_error(cfg, str(path))


def _file_rows(cfg: DictConfig, path: str, form: str, skipped: list[str]) -> tuple[list[dict], str]:
    columns = OmegaConf.to_container(cfg.columns, resolve=True) if cfg.get("columns") is not None else {}
    skip = bool(cfg.get("skip_bad_rows", False))
    rows = read_source(path, cfg.get("split", "train"), skip, skipped)
    return convert_rows(rows, form, Path(path).expanduser(), columns, skip, skipped, cfg.get("format"))


def load_data(cfg: DictConfig, method: Method, seed: int) -> PreparedData:
    form = dataset_form(cfg, method)
    skipped: list[str] = []
    source_format = "built-in"
    if cfg.get("builtin"):
        train = Dataset.from_list(builtin_rows(cfg, form, "train", seed))
        evaluation = Dataset.from_list(builtin_rows(cfg, form, "eval", seed))
    else:
        rows, source_format = _file_rows(cfg, str(cfg.path), form, skipped)
        train = Dataset.from_list(rows)
        evaluation = None
        if cfg.get("eval_path"):
            evaluation = Dataset.from_list(_file_rows(cfg, str(cfg.eval_path), form, skipped)[0])
        elif cfg.get("eval_fraction", 0) and len(train) > 1:
            split = train.train_test_split(test_size=cfg.eval_fraction, seed=seed)
            train, evaluation = split["train"], split["test"]
    if skipped:
        log.warning("skipped %d bad rows (dataset.skip_bad_rows=true); first: %s", len(skipped), "; ".join(skipped[:3]))
    data = PreparedData(train=train, eval=evaluation, source_format=source_format, skipped=skipped)
    log.info("data: %s -> %s form: %s", cfg.name, form, data.describe())
    return data
