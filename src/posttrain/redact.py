"""Keeps credentials out of everything a run writes: config.yaml, logs, metrics and the W&B config.

A credential is the value of a config key or environment variable whose name mentions token, secret,
password or api_key (HF_TOKEN, WANDB_API_KEY, ...).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

SECRET_NAME = re.compile(r"token|secret|password|passwd|api_?key|credential", re.IGNORECASE)
MASK = "***"
# Values this short are not masked inside free text (they would blank out ordinary words and numbers).
MIN_SECRET_LENGTH = 6


def secret_values() -> list[str]:
    """Values of credential-like environment variables, longest first."""
    values = {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, values: list[str] | None = None) -> str:
    for value in secret_values() if values is None else values:
        text = text.replace(value, MASK)
    return text


def redact(obj: Any, values: list[str] | None = None) -> Any:
    """A copy of a plain container (dicts, lists, scalars) with credential keys and values masked."""
    values = secret_values() if values is None else values
    if isinstance(obj, dict):
        return {
            k: (MASK if SECRET_NAME.search(str(k)) and v not in (None, "") else redact(v, values))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v, values) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, values)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that masks credential values in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        values = secret_values()
        if values:
            record.msg = redact_text(record.getMessage(), values)
            record.args = ()
        return True


def install_log_redaction() -> None:
    """Mask credentials in every handler of the root logger (console and train.log)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
