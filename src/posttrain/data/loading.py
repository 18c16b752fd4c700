"""conf/dataset/ -> the train and eval datasets a method's trainer gets, validated before any model loads."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig, OmegaConf

from posttrain.data.builtin import builtin_rows
from posttrain.data.files import looks_local, read_source
from posttrain.data.formats import convert_rows
from posttrain.errors import PosttrainError
from posttrain.options import group_option
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
        from trl import is_conversational

        return is_conversational(self.train[0])

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
    return PosttrainError(f"dataset file {path} does not exist (dataset={cfg.get('name', 'mixture source')})", hint)


def named_dataset_config(name: str) -> DictConfig:
    """conf/dataset/<name>.yaml with the options its defaults list builds on (mixture sources refer to
    datasets by name)."""
    return group_option("dataset", name, "mixture source names unknown dataset")


def _source_config(source: DictConfig) -> DictConfig:
    if not source.get("dataset"):
        return source
    own = {k: v for k, v in OmegaConf.to_container(source, resolve=True).items() if k not in ("dataset", "ratio")}
    return OmegaConf.merge(named_dataset_config(str(source.dataset)), own)


def check_dataset_config(cfg: DictConfig, method: Method) -> None:
    """What can be known about the data without reading it: form, ratios, and that files exist."""
    dataset_form(cfg, method)
    if cfg.get("mixture"):
        from posttrain.data.mixture import normalised_ratios

        sources = OmegaConf.to_container(cfg.mixture.sources, resolve=True) or []
        normalised_ratios(sources)
        for source in sources:
            resolved = _source_config(OmegaConf.create(source))
            if not resolved.get("builtin"):
                path = resolved.get("path")
                if not path or (looks_local(str(path)) and not Path(str(path)).expanduser().exists()):
                    raise _missing_file_error(resolved, str(path))
        return
    if cfg.get("builtin"):
        if cfg.get("path"):
            raise PosttrainError(
                f"dataset={cfg.name} is built in and reads no file, but dataset.path={cfg.path} was given",
                f"use dataset=local dataset.path={cfg.path} to train on that file",
            )
        return
    if not cfg.get("path"):
        raise PosttrainError(f"dataset {cfg.name} has no path", "set dataset.path=<file .jsonl/.json/.parquet/.csv/.txt>")
    for key in ("path", "eval_path"):
        path = cfg.get(key)
        if path and looks_local(str(path)) and not Path(str(path)).expanduser().exists():
            raise _missing_file_error(cfg, str(path))


def check_dataset_rows(cfg: DictConfig, method: Method) -> set[str] | None:
    """Read and convert a file dataset's rows (train and eval file) as training will, so bad data stops
    before the training libraries import; returns the columns of the converted training rows (what reward
    functions receive). None where the rows are not read here: built-in data, mixtures and hub datasets."""
    if cfg.get("builtin") or cfg.get("mixture") or not cfg.get("path") or not looks_local(str(cfg.path)):
        return None
    form = dataset_form(cfg, method)
    rows = _file_rows(cfg, str(cfg.path), form, [])[0]
    if cfg.get("eval_path") and looks_local(str(cfg.eval_path)):
        _file_rows(cfg, str(cfg.eval_path), form, [])
    return set().union(*(row.keys() for row in rows))


def _file_rows(cfg: DictConfig, path: str, form: str, skipped: list[str]) -> tuple[list[dict], str]:
    columns = OmegaConf.to_container(cfg.columns, resolve=True) if cfg.get("columns") is not None else {}
    skip = bool(cfg.get("skip_bad_rows", False))
    rows = read_source(path, cfg.get("split", "train"), skip, skipped, cfg.get("text_split") or "line")
    template = OmegaConf.to_container(cfg.template, resolve=True) if cfg.get("template") else None
    return convert_rows(rows, form, Path(path).expanduser(), columns, skip, skipped, cfg.get("format"), template)


def _source_rows(source: DictConfig, form: str, seed: int, skipped: list[str]) -> list[dict]:
    if source.get("builtin"):
        return builtin_rows(source, form, "train", seed)
    return _file_rows(source, str(source.path), form, skipped)[0]


def _eval_split(cfg: DictConfig, train: Dataset, form: str, seed: int, skipped: list[str]):
    """A separate eval file, or a seeded held-out fraction of the training rows, or no eval split."""
    if cfg.get("eval_path"):
        return train, Dataset.from_list(_file_rows(cfg, str(cfg.eval_path), form, skipped)[0])
    if cfg.get("eval_fraction", 0) and len(train) > 1:
        split = train.train_test_split(test_size=cfg.eval_fraction, seed=seed)
        return split["train"], split["test"]
    return train, None


def eval_rows(cfg: DictConfig, form: str, seed: int) -> list[dict]:
    """The dataset's eval split in `form` (a key of registry.FORMS), the same rows a run with that form holds
    out; [] when the dataset has no eval split. For evaluators that score held-out rows."""
    split = _split(cfg, form, seed, [], "")[1]
    return split.to_list() if split is not None else []


def load_data(cfg: DictConfig, method: Method, seed: int, tokenizer_id: str = "") -> PreparedData:
    form = dataset_form(cfg, method)
    skipped: list[str] = []
    train, evaluation, source_format = _split(cfg, form, seed, skipped, tokenizer_id)
    if skipped:
        log.warning("skipped %d bad rows (dataset.skip_bad_rows=true); first: %s", len(skipped), "; ".join(skipped[:3]))
    data = PreparedData(train=train, eval=evaluation, source_format=source_format, skipped=skipped)
    log.info("data: %s -> %s form: %s", cfg.name, form, data.describe())
    return data


def _split(cfg: DictConfig, form: str, seed: int, skipped: list[str], tokenizer_id: str):
    """(train, eval or None, source format) of the dataset in `form`."""
    if cfg.get("builtin"):
        source_format = "built-in"
        train = Dataset.from_list(builtin_rows(cfg, form, "train", seed))
        evaluation = Dataset.from_list(builtin_rows(cfg, form, "eval", seed))
    else:
        if cfg.get("mixture"):
            from posttrain.data.mixture import prepare_mixture

            source_format = "mixture"
            rows = prepare_mixture(cfg, form, seed, tokenizer_id, _source_config, lambda src: _source_rows(src, form, seed, skipped))
        else:
            rows, source_format = _file_rows(cfg, str(cfg.path), form, skipped)
        train, evaluation = _eval_split(cfg, Dataset.from_list(rows), form, seed, skipped)
    return train, evaluation, source_format
