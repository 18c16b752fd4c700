"""The front door for configs: a command line becomes the checked configs it will run.

Every command goes through here: `python -m posttrain` (the rule below, the pre-launch checks, the configs
of a pipeline's stages, `--cfg job`) and the helper commands (`posttrain.sample`, `.pairs`, `.report`).

What you see is what runs. The default preset (experiment=tictactoe, a chain of stages) applies only when
the command line names neither method= nor dataset=; naming one of them runs that single method on its own
defaults plus the top-level knobs (learning_rate=null leaves the rate to the table of
posttrain.learning_rate). A preset's stage settings apply to a single method only when the preset
is named (`experiment=tictactoe method=dpo` runs that preset's DPO stage). This module rewrites the command
line accordingly before Hydra composes it (`~experiment`, or the stage's settings then `stages=null`), so
`--cfg job`, the run directory's name, .hydra/ and config.yaml all show the config that trains.

A training file of your own replaces a named dataset's files: `dataset.path=...` without `dataset.eval_path=...`
also sets dataset.eval_path=null, so eval_fraction of your rows is held out rather than the named dataset's
own eval file being read (dataset=nli's guide file, for instance).
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Callable

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from posttrain.errors import PosttrainError, fail
from posttrain.naming import register_resolvers
from posttrain.run.pipeline import starting_from

register_resolvers()  # the configs' ${posttrain.*:...} interpolations

CONFIG_MODULE = "posttrain.conf"
CONFIG_NAME = "train"
# Command-line keys that stay with a pipeline instead of reaching its stages.
PIPELINE_KEYS = ("method", "stages", "run_name")
# Command-line keys that choose a single run over the default preset's pipeline.
SINGLE_RUN_KEYS = ("method", "dataset")


# --- override text -------------------------------------------------------------------------------------

def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def value_text(value) -> str:
    """A Python value as Hydra override text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    text = str(value)
    return text if re.fullmatch(r"[\w./:+-]+", text) else "'" + text.replace("'", "\\'") + "'"


def stage_overrides(settings: dict, prefix: str = "") -> list[str]:
    """Hydra override strings for a stage's mapping: {dataset: {thoughts: false}} -> dataset.thoughts=false."""
    overrides = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            overrides += stage_overrides(value, prefix=f"{name}.")
        else:
            overrides.append(f"{name}={value_text(value)}")
    return overrides


def parse_overrides(overrides: list[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        message = str(err.message).splitlines()[0]
        raise PosttrainError(
            f"cannot read override '{err.override}': {message}",
            "write overrides as key=value (e.g. learning_rate=1e-4) and quote values with spaces or brackets",
        ) from None


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


# --- the rule: what a command line runs ----------------------------------------------------------------

def _is_null(override: Override, key: str) -> bool:
    return (override.key_or_group == key and not override.is_delete() and not override.is_sweep_override()
            and override.get_value_element_as_str() == "null")


def _named(parsed: list[Override], key: str) -> list[Override]:
    return [o for o in parsed if o.key_or_group == key and o.package is None]


def _preset_stages(preset: str, config_name: str) -> dict:
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=[f"experiment={preset}"])
    return OmegaConf.to_container(cfg.stages, resolve=False) or {}


def command_overrides(overrides: list[str], config_name: str = CONFIG_NAME) -> list[str]:
    """The overrides Hydra composes for this command line (see the module docstring for the rule)."""
    parsed = [o for o in parse_overrides(overrides) if not _is_null(o, "learning_rate")]  # null: the table's rate
    rewritten = ["~experiment" if _is_null(o, "experiment") else o.input_line for o in parsed]
    if _named(parsed, "dataset.path") and not _named(parsed, "dataset.eval_path"):
        rewritten.append("dataset.eval_path=null")  # your file, not the named dataset's eval file
    experiment = _named(parsed, "experiment")
    if not any(_named(parsed, key) for key in SINGLE_RUN_KEYS):
        return rewritten
    if not experiment:
        return [*rewritten, "~experiment"]  # the default preset's pipeline is not what was asked for
    methods = _named(parsed, "method")
    preset = experiment[0]
    if not methods or preset.is_delete() or preset.is_sweep_override() or preset.get_value_element_as_str() == "null":
        return rewritten
    if methods[0].is_sweep_override():
        raise PosttrainError(
            f"a sweep over method on experiment={preset.get_value_element_as_str()} is ambiguous (its stages "
            "set each method differently)",
            "sweep the methods without experiment=, or launch one method at a time",
        )
    method = methods[0].get_value_element_as_str()
    stages = _preset_stages(preset.get_value_element_as_str(), config_name)
    stage = next((settings or {} for settings in stages.values() if (settings or {}).get("method") == method), None)
    if stage is None:
        return [*rewritten, "stages=null"] if stages else rewritten
    given = {override_key(o) for o in rewritten}
    folded = [o for o in stage_overrides(stage) if override_key(o) not in given]
    return [*folded, *rewritten, "stages=null"]


def rewrite_argv(argv: list[str], overrides: list[str], rewritten: list[str]) -> list[str]:
    """argv with its overrides replaced by `rewritten` (flags such as --multirun and --cfg stay)."""
    remaining = list(overrides)
    kept = []
    for token in argv:
        if remaining and token == remaining[0]:
            remaining.pop(0)
        else:
            kept.append(token)
    return [*kept, *rewritten]


# --- stages --------------------------------------------------------------------------------------------

def pipeline_stages(cfg: DictConfig) -> list[tuple[str, list[str]]]:
    """A pipeline's stages as (name, overrides), in order; [] for a single run."""
    stages = OmegaConf.to_container(cfg.stages, resolve=True) if cfg.get("stages") else {}
    return [(str(name), stage_overrides(settings or {})) for name, settings in stages.items()]


def stage_config(config_name: str, overrides: list[str], command_line: list[str]) -> DictConfig:
    """The config one stage trains with, less its starting point: the config composed again with the stage's
    overrides, then the command line's (less the pipeline's own keys). The pipeline points model.path at the
    previous stage's final/ (run.pipeline.starting_from)."""
    passed_on = [o for o in command_line if override_key(o) not in PIPELINE_KEYS]
    return compose(config_name=config_name, overrides=[*overrides, *passed_on, "stages=null"])


def stage_configs(cfg: DictConfig, command_line: list[str], config_name: str) -> list[tuple[str, list[str], DictConfig]]:
    """A pipeline's stages in order as (name, the stage's overrides, its config less the starting point);
    [] for a single run. Called inside a composing Hydra (a Hydra task, or initialize_config_module)."""
    return [(name, settings, stage_config(config_name, settings, command_line)) for name, settings in pipeline_stages(cfg)]


# --- checks before launch ------------------------------------------------------------------------------

def _group_options(group: str) -> list[str]:
    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


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
                raise PosttrainError(f"unknown {group} '{value}'", f"choose one of: {', '.join(options)}")


def _check_keys_exist(parsed: list[Override], cfg: DictConfig) -> None:
    """Explain which plain key=value override names a key the config does not have."""
    for override in parsed:
        if _is_group(override.key_or_group) or override.is_add() or override.is_force_add() or override.is_delete():
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


def _compose_checked(config_name: str, combo: list[str], parsed: list[Override]) -> DictConfig:
    try:
        return compose(config_name=config_name, overrides=combo, return_hydra_config=True)
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


def check_command_line(overrides: list[str], config_name: str, multirun: bool) -> None:
    """Compose the config for every value of the command line (each stage of a pipeline too, by the recipe
    the pipeline uses) and run the config checks on it; probe each output directory once."""
    from posttrain.checks import check_config, check_data, check_output_dir
    from posttrain.sweep import check_search

    parsed = parse_overrides(overrides)
    output_dirs: set[str] = set()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        _check_group_choices(parsed)
        for combo in _combinations(parsed):
            cfg = _compose_checked(config_name, combo, parsed)
            stages = pipeline_stages(cfg)
            if not stages:
                check_config(cfg)
                check_data(cfg)
            for stage, stage_settings in stages:
                try:
                    stage_cfg = stage_config(config_name, stage_settings, combo)
                    check_config(stage_cfg)
                    check_data(stage_cfg)
                except PosttrainError as error:
                    raise PosttrainError(f"stage {stage}: {error.problem}", error.fix) from None
            output_dirs.add(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
            if multirun:
                check_search(cfg)
    for output in sorted(output_dirs):  # a sweep's jobs share one sweep dir: probe it once, not per job
        check_output_dir(output)


# --- the configs a command trains -----------------------------------------------------------------------

def configs_to_run(overrides: list[str], config_name: str) -> tuple[DictConfig, list[tuple[str, DictConfig]]]:
    """The composed config of a command line (its first combination) and the configs that train: itself for
    a single run; for a pipeline each stage's, labelled <k>-<stage> and starting from the previous final/."""
    from pathlib import Path

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        stages = stage_configs(cfg, overrides, config_name)
        if not stages:
            return cfg, [("run", cfg)]
        run_dir = Path(str(cfg.hydra.run.dir)).absolute()
        configs, start = [], None
        for index, (name, _, stage_cfg) in enumerate(stages, start=1):
            configs.append((f"{index}-{name}", starting_from(stage_cfg, start)))
            start = run_dir / f"{index}-{name}" / "final"
        return cfg, configs


def print_pipeline_configs(overrides: list[str], config_name: str, resolve: bool) -> bool:
    """`--cfg job` of a pipeline prints its config, then each stage's (what <run dir>/<k>-<stage>/config.yaml
    will hold). Returns False for a single run, whose config Hydra prints as it is."""
    from pathlib import Path

    cfg, configs = configs_to_run(overrides, config_name)
    if not pipeline_stages(cfg):
        return False
    run_dir = Path(str(cfg.hydra.run.dir)).absolute()
    documents = [OmegaConf.to_yaml(_without_hydra(cfg), resolve=resolve)]
    for label, stage_cfg in configs:
        documents.append(f"# stage {label}: {run_dir / label / 'config.yaml'}\n"
                         + OmegaConf.to_yaml(_without_hydra(stage_cfg), resolve=resolve))
    print("---\n".join(documents), end="")
    return True


def _without_hydra(cfg: DictConfig) -> DictConfig:
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    return OmegaConf.create(plain)


# --- helper commands -----------------------------------------------------------------------------------

def compose_tool_config(config_name: str, overrides: list[str]) -> DictConfig:
    """The config of a helper command (posttrain.sample, posttrain.pairs, posttrain.report):
    conf/<config_name>.yaml with key=value overrides, every mandatory (???) field checked."""
    parsed = parse_overrides(overrides)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        try:
            cfg = compose(config_name=config_name, overrides=overrides)
        except (HydraException, OmegaConfBaseException):
            _check_keys_exist(parsed, compose(config_name=config_name))
            raise
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise PosttrainError(
            f"missing {', '.join(missing)}", " ".join(f"{key}=..." for key in missing) + " on the command line"
        )
    return cfg


def tool_help(config_name: str) -> str:
    """--help of a helper command: its config file, whose first comment is the usage and whose every field
    carries its comment."""
    from importlib.resources import files

    text = files(CONFIG_MODULE).joinpath(f"{config_name}.yaml").read_text(encoding="utf-8")
    return f"python -m posttrain.{config_name} key=value ...  (??? = required)\n\n{text}"


def run_tool(config_name: str, body: Callable[[DictConfig], None]) -> None:
    """Run a helper command's body on its composed config; a PosttrainError becomes one line and exit 1."""
    if {"--help", "-h"} & set(sys.argv[1:]):
        print(tool_help(config_name))
        return
    try:
        body(compose_tool_config(config_name, sys.argv[1:]))
    except PosttrainError as error:
        fail(error)
