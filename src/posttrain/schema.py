"""One typed view per config group: each field's type and allowed values, stated once, checked once after
composition (posttrain.checks.check_config runs `validate` before any model or data loads).

The YAML files say what each field does (one comment each, in the option or base that introduces it); the
classes below say what a field may hold. A group's options share its view: conf/model/*.yaml all read as
`Model`, conf/dataset/*.yaml as `Dataset`, and so on. An option may carry more fields than its view (a
dataset's `template`, a hub model's `published_parameters`); `method.args` map onto TRL's config classes and
stay free-form. Fields missing from a group (peft=none has only `name`) are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from posttrain.errors import PosttrainError
from posttrain.registry import EVALUATORS


@dataclass(frozen=True)
class Range:
    """A number (or an integer) within bounds; `special` is one extra value with its meaning (max_steps=-1)."""

    kind: str  # "number" or "integer"
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    special: tuple[int, str] | None = None
    example: str = ""
    # what null means, when null is allowed (eval.limit=null: every item)
    null: str | None = None
    # what auto means, when the word auto is allowed (hardware.gpus=auto: every visible GPU)
    auto: str | None = None

    def converted(self, value: Any) -> float | int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.kind == "integer":
            return int(value) if int(value) == value else None
        return float(value)

    def allows(self, value: Any) -> bool:
        if value is None and self.null:
            return True
        if value == "auto" and self.auto:
            return True
        number = self.converted(value)
        if number is None:
            return False
        if self.special and number == self.special[0]:
            return True
        return ((self.gt is None or number > self.gt) and (self.ge is None or number >= self.ge)
                and (self.lt is None or number < self.lt))

    def wanted(self) -> str:
        """What a good value is, e.g. 'a number in [0, 1)' or '-1 (use num_epochs) or an integer > 0'."""
        text = "a number" if self.kind == "number" else "an integer"
        if self.lt is not None:  # an interval: [ge, lt) or (gt, lt)
            text += f" in [{self.ge:g}, {self.lt:g})" if self.gt is None else f" in ({self.gt:g}, {self.lt:g})"
        elif self.gt is not None:
            text += f" > {self.gt:g}"
        elif self.ge is not None:
            text += f" >= {self.ge:g}"
        if self.null:
            text = f"null ({self.null}) or {text}"
        if self.auto:
            text = f"auto ({self.auto}) or {text}"
        return f"{self.special[0]} ({self.special[1]}) or {text}" if self.special else text

    def problem(self, key: str, value: Any) -> PosttrainError | None:
        if self.allows(value):
            return None
        return PosttrainError(f"{key} must be {self.wanted()}, got {value!r}", f"set it like {key}={self.example}")


@dataclass(frozen=True)
class Choice:
    """One of a few words; `fix` defaults to setting the first."""

    values: tuple[str, ...]
    fix: str = ""

    def problem(self, key: str, value: Any) -> PosttrainError | None:
        if value in self.values:
            return None
        words = ", ".join(self.values[:-1]) + f" or {self.values[-1]}"
        return PosttrainError(f"{key} must be {words}, got {value!r}", self.fix or f"set {key}={self.values[0]}")


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def problem(self, key: str, value: Any) -> PosttrainError | None:
        if isinstance(value, bool):
            return None
        return PosttrainError(f"{key} must be true or false, got {value!r}", f"set {key}=false")


def number(example: str, **bounds) -> Any:
    return field(metadata={"allowed": Range("number", example=example, **bounds)})


def integer(example: str, **bounds) -> Any:
    return field(metadata={"allowed": Range("integer", example=example, **bounds)})


def one_of(*values: str, fix: str = "") -> Any:
    return field(metadata={"allowed": Choice(values, fix)})


def flag() -> Any:
    return field(metadata={"allowed": Flag()})


# --- the groups (the comment on each field is in its YAML file) ---------------------------------------

@dataclass
class Knobs:
    """conf/train.yaml: the top-level knobs."""

    learning_rate: float = number("1e-4", gt=0)
    batch_size: int = integer("8", gt=0)
    num_epochs: float = number("1", gt=0)
    max_steps: int = integer("100", gt=0, special=(-1, "use num_epochs"))
    lora_rank: int = integer("32", gt=0, special=(0, "full fine-tuning"))
    dpo_beta: float = number("0.1", gt=0)
    seed: int = integer("42", ge=0)


@dataclass
class Training:
    """conf/training/default.yaml: optimizer, schedule, logging and checkpoint cadence."""

    gradient_accumulation_steps: int = integer("4", gt=0)
    lr_scheduler_type: str = field()
    warmup_ratio: float = number("0.05", ge=0, lt=1)
    weight_decay: float = number("0.01", ge=0)
    max_grad_norm: float = number("1.0", gt=0)
    logging_steps: int = integer("10", gt=0)
    eval_steps: int = integer("100", gt=0, special=(0, "only at the end"))
    keep_best: str | None = field()
    keep_best_direction: str = one_of("auto", "maximize", "minimize")
    save_steps: int = integer("200", gt=0, special=(0, "only final/"))
    save_total_limit: int = integer("2", ge=1)
    keep_checkpoints: bool = flag()
    gradient_checkpointing: bool = flag()
    on_nonfinite_loss: str = one_of("stop", "skip")


@dataclass
class Model:
    """conf/model/: conf/hub_model.yaml (the hub models' base) and conf/model/tiny.yaml say what each does."""

    name: str = field()
    path: str | None = field()
    init: str = one_of("auto", "pretrained", "random")
    tokenizer: str | None = field()
    gguf_file: str | None = field()
    trust_remote_code: bool = flag()
    max_length: int = integer("1024", gt=0)
    architecture: dict = field()


@dataclass
class Dataset:
    """conf/dataset/: conf/dataset/local.yaml (every file dataset's base) says what each does."""

    name: str = field()
    builtin: str | None = field()
    form: str = field()
    path: str | None = field()
    split: str = field()
    format: str | None = field()
    text_split: str = one_of("line", "paragraph")
    eval_path: str | None = field()
    eval_fraction: float = number("0.05", ge=0, lt=1)
    columns: dict = field()
    skip_bad_rows: bool = flag()
    missing_hint: str | None = field()


@dataclass
class Peft:
    """conf/peft/: lora.yaml (qlora extends it) says what each does."""

    name: str = one_of("lora", "qlora", "none")
    lora_alpha: float = number("64", gt=0)
    lora_dropout: float = number("0.05", ge=0, lt=1)
    target_modules: Any = field()
    load_in_4bit: bool = flag()


@dataclass
class Hardware:
    """conf/hardware/: auto.yaml (cpu and gpu extend it) says what each does; src/posttrain/hardware.py checks
    the throughput knobs (attention, liger, packing, ...) when it resolves them."""

    device: str = one_of("auto", "cpu", "cuda", fix="use hardware=auto")
    precision: str = one_of("auto", "fp32", "bf16", "fp16")
    gpus_per_node: int = integer("1", ge=0)
    cpus_per_task: int = integer("8", gt=0)
    mem_gb: float = number("64", gt=0)
    timeout_min: float = number("720", gt=0)
    nodes: int = integer("1", gt=0)
    gpus: int | str = integer("2", gt=0, auto="every visible GPU with hardware=gpu, else 1")
    strategy: str = one_of("auto", "ddp", "fsdp")
    dataloader_workers: int | str = integer("2", ge=0, auto="2 on a GPU, 0 on a CPU")


@dataclass
class Eval:
    """conf/eval/: each option says what its evaluator measures (posttrain.registry.EVALUATORS lists them)."""

    name: str = one_of(*EVALUATORS)
    limit: int | None = integer("100", gt=0, null="every item")
    training_limit: int = integer("64", gt=0, special=(0, "only at the end"))
    games: int = integer("100", ge=0)


# config key of each group ("" = the top level) -> its view
VIEWS: dict[str, type] = {"": Knobs, "training": Training, "model": Model, "dataset": Dataset, "peft": Peft,
                          "hardware": Hardware, "eval": Eval}


def problems(cfg: DictConfig, group: str) -> list[PosttrainError]:
    """What is wrong with one group of a composed config, in field order."""
    node = cfg if group == "" else cfg.get(group)
    found = []
    for spec in fields(VIEWS[group]):
        allowed = spec.metadata.get("allowed")
        if allowed is None or node is None or spec.name not in node:
            continue
        key = f"{group}.{spec.name}" if group else spec.name
        error = allowed.problem(key, OmegaConf.select(cfg, key))
        if error:
            found.append(error)
    return found


def validate(cfg: DictConfig, groups: tuple[str, ...] = tuple(VIEWS)) -> None:
    """Raise the first problem of the given groups (all of them by default)."""
    for group in groups:
        for error in problems(cfg, group):
            raise error
