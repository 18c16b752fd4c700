"""Keeps credentials out of everything a run writes: config.yaml, logs, metrics and the W&B config.

A credential is the value of a config key or environment variable whose name mentions token, secret,
password or api_key (HF_TOKEN, WANDB_API_KEY, ...). Such keys are masked wherever they appear (config files,
`key=value` overrides); their values are masked in free text too (log lines, Hydra's saved command line).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

# token, secret, password, api_key, ... as a word of the name (HF_TOKEN, hub_token, WANDB_API_KEY, db.password),
# but not tokenizer, max_new_tokens or the special-token strings (pad_token, eos_token, ...)
_CREDENTIAL_WORD = r"(?:token|secrets?|password|passwd|api_?key|access_?key|credentials?)"
SECRET_NAME = re.compile(rf"(?<![a-z]){_CREDENTIAL_WORD}(?![a-z])", re.IGNORECASE)
NOT_SECRET_NAME = re.compile(r"(?:pad|eos|bos|unk|sep|cls|mask|special|image|audio|video)_token(?![a-z])", re.IGNORECASE)
MASK = "***"
# Values this short are not masked inside free text (they would blank out ordinary words and numbers).
MIN_SECRET_LENGTH = 6
# `name=value` in free text (a command-line override, Hydra's override_dirname) whose name is a credential's
NAMED_VALUE = re.compile(r"(?P<name>[\w.+~-]+)=(?P<value>[^,\s'\"]+)")
# Credential values seen in the run's config (remember_secrets), masked like those of the environment.
_CONFIG_SECRETS: set[str] = set()


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and not NOT_SECRET_NAME.search(name)


def _mask_named_value(match: re.Match) -> str:
    return f"{match.group('name')}={MASK}" if is_secret_name(match.group("name")) else match.group(0)


def remember_secrets(obj: Any) -> None:
    """Note the values of credential keys anywhere in a plain container, so free text masks them too."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if is_secret_name(str(key)) and isinstance(value, (str, int)) and len(str(value)) >= MIN_SECRET_LENGTH:
                _CONFIG_SECRETS.add(str(value))
            else:
                remember_secrets(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            remember_secrets(value)


def secret_values() -> list[str]:
    """Values of credential-like environment variables and config keys, longest first."""
    values = {v for k, v in os.environ.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values | _CONFIG_SECRETS, key=len, reverse=True)


def redact_text(text: str, values: list[str] | None = None) -> str:
    for value in secret_values() if values is None else values:
        text = text.replace(value, MASK)
    return NAMED_VALUE.sub(_mask_named_value, text)


def redact(obj: Any, values: list[str] | None = None) -> Any:
    """A copy of a plain container (dicts, lists, scalars) with credential keys and values masked."""
    values = secret_values() if values is None else values
    if isinstance(obj, dict):
        return {
            k: (MASK if is_secret_name(str(k)) and v not in (None, "") else redact(v, values))
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
        message = record.getMessage()
        masked = redact_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def install_log_redaction() -> None:
    """Mask credentials in every handler of the root logger (console and train.log)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
