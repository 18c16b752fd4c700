"""Reading local data files (.jsonl, .json, .parquet, .csv, and plain-text corpora .txt/.txt.gz) into rows,
with errors that name the file, the row and the fix. Rows are numbered from 1: the line number in JSON-lines
and text files (a paragraph's first line), the data row otherwise. A text corpus is one document per line,
or per blank-line separated paragraph (dataset.text_split), each a row with a `text` field."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posttrain.errors import PosttrainError

TABLE_EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")
TEXT_EXTENSIONS = (".txt", ".txt.gz")
EXTENSIONS = (*TABLE_EXTENSIONS, *TEXT_EXTENSIONS)
TEXT_SPLITS = ("line", "paragraph")


def extension(path: Path) -> str:
    """The data extension of a file name: .txt.gz counts as one."""
    return ".txt.gz" if path.name.endswith(".txt.gz") else path.suffix


def looks_local(path: str) -> bool:
    """True for strings that name a place on disk rather than a hub id like org/name."""
    return (
        path.startswith(("/", "./", "../", "~"))
        or os.path.exists(os.path.expanduser(path))
        or path.count("/") > 1
        or path.endswith(EXTENSIONS)
    )


@dataclass
class Row:
    number: int  # 1-based line (JSON lines) or data row
    values: dict[str, Any]


def row_label(path: Path, number: int) -> str:
    unit = "line" if extension(path) in (".jsonl", *TEXT_EXTENSIONS) else "row"
    return f"{path} {unit} {number}"


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if extension(path) == ".txt.gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise PosttrainError(f"{path} is not a readable gzip file ({err})", "re-compress it with gzip, or give the plain .txt") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise PosttrainError(
            f"{path} is not UTF-8 text (bad byte at line {line})",
            "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


def _json_lines(path: Path, text: str, skip_bad_rows: bool, skipped: list[str]) -> list[Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            problem = f"{row_label(path, number)} is not valid JSON ({err.msg})"
            if skip_bad_rows:
                skipped.append(problem)
                continue
            raise PosttrainError(problem, "fix that line, or set dataset.skip_bad_rows=true to skip bad rows") from None
        if not isinstance(value, dict):
            problem = f"{row_label(path, number)} is a JSON {type(value).__name__}, not an object"
            if skip_bad_rows:
                skipped.append(problem)
                continue
            raise PosttrainError(problem, "write one JSON object per line, e.g. {\"prompt\": ..., \"completion\": ...}")
        rows.append(Row(number, value))
    return rows


def _json(path: Path, text: str, skip_bad_rows: bool, skipped: list[str]) -> list[Row]:
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return _json_lines(path, text, skip_bad_rows, skipped)
    try:
        values = json.loads(text)
    except json.JSONDecodeError as err:
        raise PosttrainError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})",
            "fix the file so it holds one JSON array of objects, or one object per line",
        ) from None
    rows = []
    for number, value in enumerate(values, start=1):
        if not isinstance(value, dict):
            problem = f"{row_label(path, number)} is a JSON {type(value).__name__}, not an object"
            if skip_bad_rows:
                skipped.append(problem)
                continue
            raise PosttrainError(problem, "make every element of the array an object with the dataset's fields")
        rows.append(Row(number, value))
    return rows


def _text_documents(text: str, split: str) -> list[Row]:
    """One row {"text": ...} per non-blank line, or per blank-line separated paragraph (its lines joined
    with newlines), numbered by its first line."""
    rows: list[Row] = []
    block: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if split == "line":
            if line.strip():
                rows.append(Row(number, {"text": line}))
        elif line.strip():
            start = start or number
            block.append(line)
        elif block:
            rows.append(Row(start, {"text": "\n".join(block)}))
            block, start = [], 0
    if block:
        rows.append(Row(start, {"text": "\n".join(block)}))
    return rows


def _table(path: Path) -> list[Row]:
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, encoding="utf-8", keep_default_na=False, dtype=str)
    except UnicodeDecodeError:
        raise PosttrainError(f"{path} is not UTF-8 text", "re-save the file as UTF-8") from None
    except Exception as err:  # pyarrow/pandas parse errors have many types
        raise PosttrainError(
            f"cannot read {path}: {str(err).splitlines()[0]}",
            f"check that it is a valid {path.suffix[1:]} file",
        ) from None
    records = frame.to_dict(orient="records")
    return [Row(number, _plain(record)) for number, record in enumerate(records, start=1)]


def _plain(record: dict) -> dict:
    """numpy arrays and scalars from parquet become lists and Python scalars."""
    out = {}
    for key, value in record.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, list):
            value = [_plain(v) if isinstance(v, dict) else (v.tolist() if hasattr(v, "tolist") else v) for v in value]
        elif isinstance(value, dict):
            value = _plain(value)
        out[str(key)] = value
    return out


def read_rows(path_text: str, skip_bad_rows: bool = False, skipped: list[str] | None = None,
              text_split: str = "line") -> list[Row]:
    """All rows of a data file. Broken rows raise, or are listed in `skipped` with skip_bad_rows."""
    path = Path(path_text).expanduser()
    skipped = [] if skipped is None else skipped
    if path.is_dir():
        raise PosttrainError(f"dataset path {path} is a directory, not a data file", f"point dataset.path at a {', '.join(EXTENSIONS)} file")
    if extension(path) not in EXTENSIONS:
        raise PosttrainError(
            f"{path} has an unknown extension '{path.suffix}'",
            f"use one of {', '.join(EXTENSIONS)} (convert the file, or rename it if it already is one)",
        )
    if not path.is_file():
        raise PosttrainError(f"dataset file {path} does not exist", "check dataset.path")
    try:
        if path.suffix in (".parquet", ".csv"):
            rows = _table(path)
        elif extension(path) in TEXT_EXTENSIONS:
            if text_split not in TEXT_SPLITS:
                raise PosttrainError(f"dataset.text_split={text_split} is not one of {', '.join(TEXT_SPLITS)}",
                                     "set dataset.text_split=line (one document per line) or paragraph (per blank-line separated block)")
            rows = _text_documents(_decode(path), text_split)
        else:
            text = _decode(path)
            reader = _json_lines if path.suffix == ".jsonl" else _json
            rows = reader(path, text, skip_bad_rows, skipped)
    except PermissionError:
        raise PosttrainError(f"dataset file {path} is not readable", f"fix its permissions (chmod a+r {path})") from None
    if not rows:
        raise PosttrainError(f"{path} has no data rows", "point dataset.path at a file with at least one example")
    return rows


def read_hub(dataset_id: str, split: str) -> list[Row]:
    """Rows of a hub dataset (online users; offline this fails with a clear line)."""
    import datasets

    try:
        data = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # hub, network and split errors come in many types
        raise PosttrainError(
            f"cannot load hub dataset {dataset_id} (split {split}): {str(err).splitlines()[0] if str(err) else type(err).__name__}",
            "check the id and dataset.split, or point dataset.path at a local file (offline, only local files work)",
        ) from None
    return [Row(number, _plain(record)) for number, record in enumerate(data, start=1)]


def read_source(path: str, split: str, skip_bad_rows: bool = False, skipped: list[str] | None = None,
                text_split: str = "line") -> list[Row]:
    """A local file, or a hub dataset id (org/name) when no such file exists."""
    if looks_local(path):
        return read_rows(path, skip_bad_rows, skipped, text_split)
    return read_hub(path, split)
