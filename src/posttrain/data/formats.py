"""Turning rows of a file into the form a method trains on, checking every row on the way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posttrain.data.files import Row, row_label
from posttrain.errors import PosttrainError
from posttrain.registry import FORMS


def _bad_value(value: Any) -> str | None:
    if value is None:
        return "is null"
    if isinstance(value, float) and value != value:
        return "is null"
    if isinstance(value, str):
        return "is empty" if not value.strip() else None
    if isinstance(value, list):
        return "is an empty list" if not value else None
    if isinstance(value, bool):
        return None
    return f"is a {type(value).__name__}, not text"


def convert_rows(rows: list[Row], form: str, path: Path, columns: dict, skip_bad_rows: bool, skipped: list[str]) -> list[dict]:
    fields = FORMS[form]
    present = set().union(*(row.values.keys() for row in rows[:100]))
    missing = [f for f in fields if columns.get(f, f) not in present]
    if missing:
        raise PosttrainError(
            f"{path} has no {', '.join(missing)} field(s) needed for {form} data (it has: {', '.join(sorted(present))})",
            f"map your columns with dataset.columns (e.g. dataset.columns.{missing[0]}=<your column>)",
        )
    out = []
    for row in rows:
        record = {name: row.values.get(columns.get(name, name)) for name in fields}
        problem = next(
            (f"field '{columns.get(n, n)}' {why}" for n in fields if (why := _check(n, record[n])) is not None),
            None,
        )
        if problem:
            message = f"{row_label(path, row.number)}: {problem}"
            if skip_bad_rows:
                skipped.append(message)
                continue
            raise PosttrainError(message, "fix or remove that row, or set dataset.skip_bad_rows=true to skip bad rows")
        out.append(record)
    return out


def _check(name: str, value: Any) -> str | None:
    if name == "label":
        return None if isinstance(value, bool) else f"is {value!r}, not true/false"
    return _bad_value(value)
