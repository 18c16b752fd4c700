"""The data formats people have, how each is recognised, and how its rows become the form a method trains
on. Every row is checked on the way; a bad row stops with its file and row number (or is skipped and
counted with dataset.skip_bad_rows=true).

| format             | recognised by                                   | becomes                                   |
|--------------------|-------------------------------------------------|-------------------------------------------|
| preference         | prompt, chosen, rejected                        | prompt/chosen/rejected (text or messages) |
| implicit_preference| chosen, rejected without prompt (HH-style text, | prompt/chosen/rejected, the shared prefix |
|                    | or message lists)                               | split off as the prompt                   |
| unpaired           | prompt, completion, label (boolean)             | prompt/completion/label                   |
| messages           | messages: [{role, content}, ...]                | messages (chat template applies)          |
| sharegpt           | conversations: [{from, value}, ...]             | messages (human->user, gpt->assistant)    |
| conversations      | conversations: [{role, content}, ...]           | messages                                  |
| alpaca             | instruction, output (input optional)            | prompt/completion                         |
| prompt_completion  | prompt, completion                              | prompt/completion                         |
| text               | text                                            | text                                      |
| prompt_only        | prompt                                          | prompt (other columns kept for rewards)   |

Method forms accept: completion (SFT) <- prompt_completion, alpaca, messages, sharegpt, conversations,
text, and the chosen side of preference data; preference (DPO, ...) <- preference, implicit_preference;
unpaired (KTO) <- unpaired, and preference pairs split in two; prompt (online RL) <- anything with a
prompt (other columns ride along for reward functions); text (pretraining) <- text, prompt_completion.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from posttrain.data.files import Row, row_label
from posttrain.errors import PosttrainError
from posttrain.registry import FORMS

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system",
                  "tool": "tool", "function": "tool", "observation": "tool"}
CHAT_ROLES = {"system", "user", "assistant", "tool"}
TRUE_TEXT = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class BadRow(Exception):
    """A row that cannot be used; the message names the field and what is wrong."""


def _text(row: dict, field: str) -> str:
    value = row.get(field)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise BadRow(f"field '{field}' is null")
    if not isinstance(value, str):
        raise BadRow(f"field '{field}' is a {type(value).__name__}, not text")
    if not value.strip():
        raise BadRow(f"field '{field}' is empty")
    return value


def _messages(value: Any, field: str, roles: dict[str, str] | None = None,
              file_keys: tuple[str, str] = ("role", "content")) -> list[dict]:
    """Checked ChatML messages (role/content); `roles` maps a file's role names, `file_keys` are the names
    the file used for role and content (errors name them)."""
    if value is None:
        raise BadRow(f"field '{field}' is null")
    if not isinstance(value, list) or not value:
        raise BadRow(f"field '{field}' must be a non-empty list of messages")
    messages = []
    for index, message in enumerate(value, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise BadRow(f"message {index} of '{field}' needs '{file_keys[0]}' and '{file_keys[1]}'")
        role = str(message["role"])
        role = roles.get(role.lower(), role) if roles else role
        if role not in CHAT_ROLES:
            raise BadRow(f"message {index} of '{field}' has unknown role '{message['role']}'")
        content = message["content"]
        if not isinstance(content, str) or not content.strip():
            raise BadRow(f"message {index} of '{field}' has empty or non-text content")
        messages.append({"role": role, "content": content})
    return messages


def _text_or_messages(row: dict, field: str) -> str | list[dict]:
    value = row.get(field)
    return _messages(value, field) if isinstance(value, list) else _text(row, field)


def _label(row: dict) -> bool:
    value = row.get("label")
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_TEXT:
        return TRUE_TEXT[value.strip().lower()]
    raise BadRow(f"field 'label' is {value!r}, not true/false")


def _with_assistant_turn(messages: list[dict], field: str) -> list[dict]:
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRow(f"'{field}' has no assistant message to learn from")
    return messages


def _implicit_preference(row: dict) -> dict:
    from trl import extract_prompt

    chosen, rejected = _text_or_messages(row, "chosen"), _text_or_messages(row, "rejected")
    if type(chosen) is not type(rejected):
        raise BadRow("'chosen' and 'rejected' must both be text or both be message lists")
    split = extract_prompt({"chosen": chosen, "rejected": rejected})
    if not split["prompt"]:
        raise BadRow("'chosen' and 'rejected' share no prompt; add a prompt column")
    if not split["chosen"] or not split["rejected"]:
        raise BadRow("'chosen' and 'rejected' are identical after their shared prompt")
    return split


def _sharegpt(row: dict) -> dict:
    """from/value messages (human, gpt, ...) -> ChatML messages, through TRL's maybe_convert_to_chatml."""
    from trl import maybe_convert_to_chatml

    example = maybe_convert_to_chatml({"conversations": copy.deepcopy(row.get("conversations"))})
    messages = _messages(example["messages"], "conversations", SHAREGPT_ROLES, file_keys=("from", "value"))
    return {"messages": _with_assistant_turn(messages, "conversations")}


def _alpaca(row: dict) -> dict:
    prompt = _text(row, "instruction")
    extra = row.get("input")
    if isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n\n{extra}"
    return {"prompt": prompt, "completion": _text(row, "output")}


@dataclass(frozen=True)
class Format:
    name: str
    columns: frozenset[str]  # all must be present
    convert: Callable[[dict], dict]

    def matches(self, columns: set[str], sample: dict) -> bool:
        if not self.columns <= columns:
            return False
        if self.name in ("sharegpt", "conversations"):
            first = (sample.get("conversations") or [{}])[0]
            return isinstance(first, dict) and ("from" in first) == (self.name == "sharegpt")
        return True


FORMATS = [
    Format("preference", frozenset({"prompt", "chosen", "rejected"}), lambda r: {
        "prompt": _text_or_messages(r, "prompt"), "chosen": _text_or_messages(r, "chosen"),
        "rejected": _text_or_messages(r, "rejected")}),
    Format("implicit_preference", frozenset({"chosen", "rejected"}), _implicit_preference),
    Format("unpaired", frozenset({"prompt", "completion", "label"}), lambda r: {
        "prompt": _text_or_messages(r, "prompt"), "completion": _text_or_messages(r, "completion"),
        "label": _label(r)}),
    Format("messages", frozenset({"messages"}), lambda r: {
        "messages": _with_assistant_turn(_messages(r.get("messages"), "messages"), "messages")}),
    Format("sharegpt", frozenset({"conversations"}), _sharegpt),
    Format("conversations", frozenset({"conversations"}), lambda r: {
        "messages": _with_assistant_turn(_messages(r.get("conversations"), "conversations"), "conversations")}),
    Format("alpaca", frozenset({"instruction", "output"}), _alpaca),
    Format("prompt_completion", frozenset({"prompt", "completion"}), lambda r: {
        "prompt": _text_or_messages(r, "prompt"), "completion": _text_or_messages(r, "completion")}),
    Format("text", frozenset({"text"}), lambda r: {"text": _text(r, "text")}),
    Format("prompt_only", frozenset({"prompt"}), lambda r: {"prompt": _text_or_messages(r, "prompt")}),
]
FORMAT_NAMES = [f.name for f in FORMATS]

# Which formats each method form accepts, and how a converted record is adapted to it.
ACCEPTS: dict[str, dict[str, Callable[[dict, dict], list[dict]]]] = {
    "completion": {
        "templated": lambda rec, row: [rec],
        "prompt_completion": lambda rec, row: [rec],
        "alpaca": lambda rec, row: [rec],
        "messages": lambda rec, row: [rec],
        "sharegpt": lambda rec, row: [rec],
        "conversations": lambda rec, row: [rec],
        "text": lambda rec, row: [rec],
        "preference": lambda rec, row: [{"prompt": rec["prompt"], "completion": rec["chosen"]}],
        "implicit_preference": lambda rec, row: [{"prompt": rec["prompt"], "completion": rec["chosen"]}],
    },
    "preference": {
        "preference": lambda rec, row: [rec],
        "implicit_preference": lambda rec, row: [rec],
    },
    "unpaired": {  # pairs are split in two by unpair() once every row is converted
        "unpaired": lambda rec, row: [rec],
        "preference": lambda rec, row: [rec],
        "implicit_preference": lambda rec, row: [rec],
    },
    "prompt": {
        name: (lambda rec, row: [{**_extra_columns(row), "prompt": rec["prompt"]}])
        for name in ("prompt_only", "prompt_completion", "alpaca", "templated", "preference", "implicit_preference",
                     "unpaired")
    },
    "text": {
        "text": lambda rec, row: [rec],
        "prompt_completion": lambda rec, row: [{"text": _join_text(rec)}],
        "templated": lambda rec, row: [{"text": _join_text(rec)}],
    },
}


def unpair(pairs: list[dict]) -> list[dict]:
    """Preference pairs as KTO rows, by TRL's unpair_preference_dataset: each pair becomes its chosen
    completion labelled true followed by its rejected one labelled false; other columns stay on both."""
    if not pairs:
        return []
    from datasets import Dataset
    from trl import unpair_preference_dataset

    numbered = Dataset.from_list(pairs).add_column(_PAIR, list(range(len(pairs))))
    rows = unpair_preference_dataset(numbered).to_list()
    rows.sort(key=lambda row: (row[_PAIR], not row["label"]))
    for row in rows:
        del row[_PAIR]
    return rows


_PAIR = "__posttrain_pair__"  # a pair's index while it is split, to keep its two rows together and in order


def _join_text(rec: dict) -> str:
    if not isinstance(rec["prompt"], str) or not isinstance(rec["completion"], str):
        raise BadRow("pretraining text needs plain-text prompt and completion, not messages")
    return rec["prompt"] + rec["completion"]


def _extra_columns(row: dict) -> dict:
    """Columns other than the conversation itself, kept for reward functions (answer, board, ...)."""
    return {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected", "completion", "messages")}


# Field order in messages (a format's columns are a set).
_FIELD_ORDER = ("prompt", "chosen", "rejected", "completion", "label", "messages", "conversations", "instruction",
                "input", "output", "text")


def format_fields(name: str) -> str:
    """What a format's rows hold, for error messages: 'preference (prompt, chosen, rejected)'."""
    if name == "templated":
        return "templated (the {column} placeholders of dataset.template)"
    fmt = next(f for f in FORMATS if f.name == name)
    fields = ", ".join(sorted(fmt.columns, key=_FIELD_ORDER.index))
    if name == "implicit_preference":
        fields += "; HH-style text or message lists sharing their prompt"
    elif name == "alpaca":
        fields += ", input optional"
    elif name in ("sharegpt", "conversations"):
        fields += ": from/value turns" if name == "sharegpt" else ": role/content turns"
    return f"{name} ({fields})"


def columns_hint(form: str | None, columns: set[str]) -> str:
    """The dataset.columns mapping that would give a file of `columns` the fields `form` needs."""
    wanted = FORMS.get(form or "completion", FORMS["completion"])
    missing = [f for f in wanted if f not in columns] or list(wanted)
    mapping = " ".join(f"dataset.columns.{f}=<your column>" for f in missing)
    return f"map your columns onto the fields with dataset.columns.<field>=<your column> ({mapping})"


def _file_columns(rows: list[Row]) -> set[str]:
    return set().union(*(row.values.keys() for row in rows[:100]))


def detect_format(rows: list[Row], path: Path, declared: str | None = None, form: str | None = None) -> Format:
    if declared:
        by_name = {f.name: f for f in FORMATS}
        if declared not in by_name:
            raise PosttrainError(f"unknown data format '{declared}'", f"use one of: {', '.join(FORMAT_NAMES)}")
        return by_name[declared]
    columns = _file_columns(rows)
    sample = rows[0].values
    for fmt in FORMATS:
        if fmt.matches(columns, sample):
            return fmt
    accepted = "; ".join(format_fields(name) for name in ACCEPTS[form]) if form in ACCEPTS else ""
    raise PosttrainError(
        f"{path} matches no known data format (its columns: {', '.join(sorted(columns)) or 'none'})",
        (f"give rows in one of the formats this method takes: {accepted}; or " if accepted else "")
        + columns_hint(form, columns),
    )


def templated_format(template: dict) -> Format:
    """Rows rendered through dataset.template: {prompt: "...{column}...", completion: "...{column}..."};
    an integer label column can be named through template.label_names (e.g. [entailment, neutral, contradiction])."""
    names = template.get("label_names")

    def render(row: dict) -> dict:
        values = dict(row)
        if names is not None and isinstance(values.get("label"), int) and not isinstance(values.get("label"), bool):
            if not 0 <= values["label"] < len(names):
                raise BadRow(f"label {values['label']} is outside label_names {names}")
            values["label"] = names[values["label"]]
        out = {}
        for field in ("prompt", "completion"):
            try:
                out[field] = template[field].format(**values)
            except KeyError as missing:
                raise BadRow(f"field {missing} used by dataset.template.{field} is missing") from None
        for field in ("prompt", "completion"):
            if not out[field].strip():
                raise BadRow(f"dataset.template.{field} renders empty")
        return out

    return Format("templated", frozenset(), render)


def convert_rows(rows: list[Row], form: str, path: Path, columns: dict, skip_bad_rows: bool,
                 skipped: list[str], declared_format: str | None = None,
                 template: dict | None = None) -> tuple[list[dict], str]:
    """Rows in the method's form, and the name of the format they were recognised as."""
    renamed = {str(theirs): ours for ours, theirs in columns.items() if theirs is not None}  # null: its own name
    if renamed:
        for row in rows:
            row.values = {renamed.get(k, k): v for k, v in row.values.items()}
    fmt = templated_format(template) if template else detect_format(rows, path, declared_format, form)
    adapters = ACCEPTS[form]
    if fmt.name not in adapters:
        columns = _file_columns(rows)
        raise PosttrainError(
            f"{path} holds {fmt.name} data (its columns: {', '.join(sorted(columns))}), which cannot train a "
            f"method that needs {form} rows ({', '.join(FORMS[form])})",
            f"give rows in one of these formats: {'; '.join(format_fields(name) for name in adapters)}; or "
            f"{columns_hint(form, columns)}; or choose a method that takes {fmt.name} data",
        )
    out: list[dict] = []
    for row in rows:
        try:
            out.extend(adapters[fmt.name](fmt.convert(row.values), row.values))
        except BadRow as bad:
            message = f"{row_label(path, row.number)}: {bad}"
            if not skip_bad_rows:
                raise PosttrainError(
                    message, "fix or remove that row, or set dataset.skip_bad_rows=true to skip bad rows"
                ) from None
            skipped.append(message)
    if not out:
        raise PosttrainError(f"{path} has no usable rows ({len(skipped)} skipped)", "fix the rows listed in the log")
    if form == "unpaired" and fmt.name in ("preference", "implicit_preference"):
        out = unpair(out)
    return out, fmt.name
