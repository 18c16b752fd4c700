"""The posttrain command: `python -m posttrain [overrides]` and the `posttrain` console script.

Before Hydra launches anything, the command line is checked the way the run will see it: every group
option exists, every key exists, every value is in range (each value of a sweep too). A problem ends the
command with one line and exit status 1; HYDRA_FULL_ERROR=1 shows the traceback instead.
"""

from __future__ import annotations

import difflib
import os
import sys

import hydra
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from posttrain.errors import PosttrainError
from posttrain.naming import register_resolvers
from posttrain.registry import describe_methods

CONFIG_MODULE = "posttrain.conf"
CONFIG_NAME = "train"

register_resolvers()
OmegaConf.register_new_resolver("posttrain.methods", describe_methods, replace=True)


def fail(error: PosttrainError, code: int = 1) -> None:
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"posttrain: error: {error.line()}", file=sys.stderr)
    sys.exit(code)


def _values(override: Override) -> list[str] | None:
    """Every value an override can take, as override text; None when it cannot be listed (intervals)."""
    if override.is_delete():
        return []
    if override.is_sweep_override():
        try:
            return list(override.sweep_string_iterator())
        except Exception:  # interval() sweeps of optuna have no finite list
            return None
    return [override.get_value_element_as_str()]


def _group_options(group: str) -> list[str]:
    loader = GlobalHydra.instance().config_loader()
    return sorted(loader.get_group_options(group))


def _is_group(name: str) -> bool:
    parent, _, leaf = name.rpartition("/")
    return "." not in name and leaf in GlobalHydra.instance().config_loader().list_groups(parent)


def _check_group_choices(parsed: list[Override]) -> None:
    for override in parsed:
        group = override.key_or_group
        if override.package is not None or not _is_group(group):
            continue
        options = _group_options(group)
        for value in _values(override) or []:
            if value not in options and value != "null":
                raise PosttrainError(
                    f"unknown {group} '{value}'", f"choose one of: {', '.join(options)}"
                )


def _check_keys_exist(parsed: list[Override], cfg: DictConfig) -> None:
    """Explain which plain key=value override names a key the config does not have."""
    for override in parsed:
        if _is_group(override.key_or_group) or override.is_add() or override.is_force_add():
            continue
        key = override.key_or_group
        if OmegaConf.select(cfg, key, default=KeyError, throw_on_resolution_failure=False) is KeyError:
            parent, _, leaf = key.rpartition(".")
            siblings = OmegaConf.select(cfg, parent) if parent else cfg
            known = list(siblings.keys()) if isinstance(siblings, DictConfig) else []
            close = difflib.get_close_matches(leaf, known, n=1)
            hint = f"did you mean {(parent + '.') if parent else ''}{close[0]}?" if close else "check the spelling"
            raise PosttrainError(
                f"unknown config key '{key}'",
                f"{hint} (python -m posttrain --cfg job lists every key; +{key}=... adds a new one)",
            )


def _combinations(parsed: list[Override]) -> list[list[str]]:
    """Override lists that cover every value of every sweep at least once (not the full grid)."""
    fixed: list[str] = []
    sweeps: list[tuple[str, list[str]]] = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_delete():
            fixed.append(override.input_line)
            continue
        values = _values(override)
        if values is None:
            continue
        if len(values) == 1:
            fixed.append(f"{key}={values[0]}")
        else:
            sweeps.append((key, values))
    base = fixed + [f"{key}={values[0]}" for key, values in sweeps]
    combos = [base]
    for index, (key, values) in enumerate(sweeps):
        for value in values[1:]:
            combo = list(base)
            combo[len(fixed) + index] = f"{key}={value}"
            combos.append(combo)
    return combos


def check_command_line(overrides: list[str], config_name: str, multirun: bool) -> None:
    """Compose the config for every value of the command line and run the config checks on it."""
    from posttrain.checks import check_config, check_output_dir
    from posttrain.run.pipeline import pipeline_stages, single_method_config
    from posttrain.search import check_search

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        message = str(err.message).splitlines()[0]
        raise PosttrainError(
            f"cannot read override '{err.override}': {message}",
            "write overrides as key=value (e.g. learning_rate=1e-4) and quote values with spaces or brackets",
        ) from None
    output_dirs: set[str] = set()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        _check_group_choices(parsed)
        for combo in _combinations(parsed):
            try:
                cfg = compose(config_name=config_name, overrides=combo, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as err:
                groups_only = [o.input_line for o in parsed if _is_group(o.key_or_group) and not o.is_sweep_override()]
                try:
                    base = compose(config_name=config_name, overrides=groups_only, return_hydra_config=True)
                except (HydraException, OmegaConfBaseException):
                    base = None
                if base is not None:
                    _check_keys_exist(parsed, base)
                first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise PosttrainError(f"the config does not compose: {first_line}", "check the overrides") from None
            stages = pipeline_stages(cfg, combo)
            check_config(cfg if stages or not cfg.get("stages") else single_method_config(cfg, combo, config_name))
            for stage, overrides in stages:
                try:
                    check_config(compose(config_name=config_name, overrides=[*overrides, *combo, "stages={}"]))
                except PosttrainError as error:
                    raise PosttrainError(f"stage {stage}: {error.problem}", error.fix) from None
            output_dirs.add(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
            if multirun:
                check_search(cfg)
    for output in sorted(output_dirs):  # a sweep's jobs share one sweep dir: probe it once, not per job
        check_output_dir(output)


def compose_tool_config(config_name: str, overrides: list[str]) -> DictConfig:
    """The config of a helper command (posttrain.sample, posttrain.pairs): conf/<config_name>.yaml with
    key=value overrides, every mandatory (???) field checked, errors as one line."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise PosttrainError(f"cannot read override '{err.override}'", "write overrides as key=value") from None
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        try:
            cfg = compose(config_name=config_name, overrides=overrides)
        except (HydraException, OmegaConfBaseException):
            base = compose(config_name=config_name)
            _check_keys_exist(parsed, base)
            raise
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise PosttrainError(
            f"missing {', '.join(missing)}", " ".join(f"{key}=..." for key in missing) + " on the command line"
        )
    return cfg


def run_tool(config_name: str, body) -> None:
    """Run a helper command's body on its composed config; a PosttrainError becomes one line and exit 1."""
    try:
        body(compose_tool_config(config_name, sys.argv[1:]))
    except PosttrainError as error:
        fail(error)


@hydra.main(version_base="1.3", config_path="pkg://posttrain.conf", config_name=CONFIG_NAME)
def hydra_app(cfg: DictConfig) -> float | None:
    from posttrain.run.job import run_job

    return run_job(cfg)


def main() -> None:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    inspecting = args.help or args.hydra_help or args.cfg or args.info or args.shell_completion
    if not inspecting:
        try:
            check_command_line(args.overrides, args.config_name or CONFIG_NAME, args.multirun)
        except PosttrainError as error:
            fail(error)
    hydra_app()
    from posttrain.sweep import unfinished_jobs

    if unfinished_jobs:
        sys.exit(1)
