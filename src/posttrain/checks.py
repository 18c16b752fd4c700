"""Checks on a composed config that need no model and no data rows: types, ranges, names, paths, devices.

Run by the entrypoint before Hydra launches anything, and again by each job (a sweeper may generate
values), so a bad value fails within seconds with one line that names the key and the fix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posttrain.data.files import looks_local
from posttrain.errors import PosttrainError
from posttrain.registry import get_evaluator, get_method
from posttrain.schema import validate


def check_knobs(cfg: DictConfig) -> None:
    """The top-level knobs and the training group, against their typed views (posttrain.schema)."""
    validate(cfg, ("", "training"))


def check_model(cfg: DictConfig) -> None:
    validate(cfg, ("model",))
    model = cfg.model
    if model.init == "pretrained" and not model.path:
        raise PosttrainError("model.init=pretrained needs model.path", "set model.path=<hub id or directory>")
    path = model.path
    in_package = str(path).startswith("pkg://")  # a model shipped inside an installed Python package
    if in_package or model.gguf_file:
        from posttrain.models.loading import check_model_source

        check_model_source(model)
    if path and model.init != "random" and looks_local(str(path)) and not in_package:
        if not Path(str(path)).expanduser().exists():
            raise PosttrainError(
                f"model path {path} does not exist",
                "point model.path at a model directory, a posttrain run directory, or a hub id like org/name",
            )
    if path and model.init != "random" and not looks_local(str(path)) and not in_package and not cfg.get("plan", False):
        check_hub_model_cached(str(path), model.gguf_file)


def hub_offline() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_hub_model_cached(hub_id: str, gguf_file: str | None) -> None:
    """Offline, a hub id must already be in the local cache: otherwise loading it would retry the network
    for a minute before failing, so it stops here in one line."""
    if not hub_offline():
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(hub_id, gguf_file or "config.json"), str):
        raise PosttrainError(
            f"model.path={hub_id} is a hub id that is not in the local cache, and the hub is offline (HF_HUB_OFFLINE)",
            "point model.path at a local model directory or posttrain run directory, use model.init=random for "
            "random weights of the same architecture, or download it once online",
        )


def check_hardware(cfg: DictConfig) -> None:
    validate(cfg, ("hardware",))
    device = cfg.hardware.device
    needs_gpu = device == "cuda" or cfg.peft.get("load_in_4bit", False)
    if needs_gpu and not cfg.get("plan", False):  # a plan is made for a GPU that need not be here
        import torch

        if not torch.cuda.is_available():
            what = "hardware=gpu" if device == "cuda" else f"peft={cfg.peft.name} (a 4-bit base)"
            raise PosttrainError(
                f"{what} needs a CUDA GPU, and none is visible",
                "run on a GPU machine, or use hardware=cpu (and peft=lora instead of qlora)",
            )


def check_peft(cfg: DictConfig) -> None:
    validate(cfg, ("peft",))
    if cfg.peft.name == "qlora" and cfg.lora_rank <= 0:
        raise PosttrainError("peft=qlora trains adapters, but lora_rank is 0", "set lora_rank=16 (or any rank > 0)")


# Bytes the output-directory check writes: more than the config files written before training starts.
WRITE_CHECK_BYTES = 256 * 1024


def check_output_dir(path: str) -> None:
    """The run directory, or its nearest existing parent, must accept a new folder with a file in it (tried
    for real, since permission bits say little to root and a full disk still makes empty folders)."""
    target = Path(path).expanduser().absolute()
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(str(probe))
        with tempfile.TemporaryDirectory(dir=probe, prefix=".posttrain-write-check-") as folder:
            (Path(folder) / "probe").write_bytes(bytes(WRITE_CHECK_BYTES))
    except OSError as err:
        raise PosttrainError(
            f"output directory {target} is not writable ({probe}: {err.strerror or type(err).__name__})",
            "run from a writable directory with free space, or set hydra.run.dir / hydra.sweep.dir to such a place",
        ) from None


def check_mandatory(cfg: DictConfig) -> None:
    """Fields marked ??? (e.g. method.teacher) and those a preset lists under `required` (e.g. model.path
    of experiment=tictactoe_dpo) are given."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    missing = set(OmegaConf.missing_keys(plain))
    missing |= {str(key) for key in cfg.get("required") or [] if OmegaConf.select(cfg, str(key)) in (None, "")}
    missing = sorted(missing)
    if missing:
        raise PosttrainError(
            f"{', '.join(missing)} must be set for this config", " ".join(f"{key}=..." for key in missing) + " on the command line"
        )


def check_method(cfg: DictConfig) -> None:
    """Rewards and a teacher name things that exist."""
    from posttrain.registry import get_reward

    for entry in cfg.method.get("rewards") or []:
        get_reward(str(entry.get("name")))
        path = entry.get("path")
        if entry.get("name") == "reward_model" and (not path or not Path(str(path)).expanduser().exists()):
            raise PosttrainError(f"reward model {path} does not exist", "point the reward_model reward's path at a method=reward run directory")
    teacher = cfg.method.get("teacher")
    if teacher and looks_local(str(teacher)) and not Path(str(teacher)).expanduser().exists():
        raise PosttrainError(f"teacher model {teacher} does not exist", "set method.teacher to a run directory or model directory")


def check_data(cfg: DictConfig) -> None:
    """The data rows, read as training will read them, and the rewards' columns against them: run by the
    front door before anything launches, so bad data stops before the training libraries import."""
    from posttrain.data.loading import check_dataset_rows
    from posttrain.rewards import columns_read

    columns = check_dataset_rows(cfg.dataset, get_method(cfg.method.name))
    if columns is None:
        return
    for entry in cfg.method.get("rewards") or []:
        for column in columns_read(OmegaConf.to_container(entry, resolve=True)):
            if column not in columns:
                raise PosttrainError(
                    f"reward {entry.get('name')} reads the dataset column '{column}', which {cfg.dataset.path} "
                    f"does not have (its columns: {', '.join(sorted(columns))})",
                    "choose rewards your data supports, e.g. 'method.rewards=[{name: exact_match, column: "
                    "<your answer column>}]' or 'method.rewards=[{name: format, pattern: <regex>}]', "
                    f"or add a '{column}' column (dataset.columns maps only the format fields)",
                )


def _allowed_types(annotation) -> tuple[set[type], tuple | None]:
    """The plain types (bool, int, float, str, NoneType) an annotation allows, and its Literal choices;
    empty when it allows something else too (lists, dicts, classes), so the value is not checked."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return set(), typing.get_args(annotation)
    members = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else (annotation,)
    plain = {bool, int, float, str, type(None)}
    if not all(member in plain for member in members):
        return set(), None
    return set(members), None


def _fits(value, allowed: set[type]) -> bool:
    if value is None:
        return type(None) in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    return type(value) in allowed


def check_method_args(method_cfg: DictConfig, method) -> None:
    """method.args against the fields and plain types of the method's TRL config class (this imports TRL),
    so a typo or a wrong type stops in one line with a did-you-mean before any data or model loads."""
    import dataclasses
    import difflib
    import typing

    _, config_class = method.trl_classes()
    known = {f.name for f in dataclasses.fields(config_class)}
    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # an annotation that does not resolve: check the names only
        hints = {}
    for key, value in (OmegaConf.to_container(method_cfg.get("args") or {}, resolve=True) or {}).items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise PosttrainError(
                f"method.args.{key} is not a field of {config_class.__name__}",
                (f"did you mean method.args.{close[0]}? " if close else "")
                + f"(the fields are TRL's {config_class.__name__}'s)",
            )
        allowed, choices = _allowed_types(hints.get(key))
        if choices is not None and value not in choices:
            raise PosttrainError(f"method.args.{key}={value!r} is not one of {', '.join(map(repr, choices))}",
                                 f"set method.args.{key} to one of them")
        if allowed and not _fits(value, allowed):
            wanted = " or ".join(sorted(t.__name__ if t is not type(None) else "null" for t in allowed))
            raise PosttrainError(f"method.args.{key} must be {wanted}, got {value!r} ({type(value).__name__})",
                                 f"set method.args.{key} to a value of type {wanted}")


def check_config(cfg: DictConfig):
    """Every check that needs neither a model nor the data rows; returns the method's registry row, the one
    lookup a run makes."""
    check_mandatory(cfg)
    method = get_method(cfg.method.name)
    check_method(cfg)
    check_knobs(cfg)
    check_hardware(cfg)  # a missing GPU first: no model choice fixes it
    check_model(cfg)
    check_peft(cfg)
    from posttrain.data.loading import check_dataset_config

    validate(cfg, ("dataset",))
    check_dataset_config(cfg.dataset, method)
    from posttrain.evaluation import check_keep_best

    validate(cfg, ("eval",))
    check_keep_best(cfg.training)
    if cfg.get("eval") is not None:  # settings that would fail only at the end of training
        get_evaluator(cfg.eval.name).check_settings(OmegaConf.to_container(cfg.eval, resolve=True))
    return method
