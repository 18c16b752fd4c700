"""The composed configs keep their shape: every preset and every group option composes to the same values
as the snapshot in tests/test_config_shapes.json (unresolved: interpolations stay text).

A refactor of conf/ (an option moved onto a base through its defaults list, a comment reworded) must leave
the snapshot equal. A deliberate change of a value or a new field is regenerated, and the diff reviewed:

    python tests/test_config_shapes.py        # rewrites tests/test_config_shapes.json from conf/
"""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

SNAPSHOT = Path(__file__).with_suffix(".json")
CONFIG_MODULE = "posttrain.conf"
# The groups whose options are composed one at a time, each with the default preset dropped.
GROUPS = ("dataset", "eval", "model", "peft", "hardware", "method", "training", "logger")
# The helper commands' primary configs, composed as they are.
TOOLS = ("sample", "pairs", "report", "chat")


def cases() -> dict[str, tuple[str, list[str]]]:
    """Case name -> (primary config, overrides), read from the files under conf/ (used to regenerate)."""
    conf = files(CONFIG_MODULE)
    found: dict[str, tuple[str, list[str]]] = {"default": ("train", [])}
    for preset in sorted(p.name[:-5] for p in (conf / "experiment").iterdir() if p.name.endswith(".yaml")):
        found[f"experiment={preset}"] = ("train", [f"experiment={preset}"])
    for group in GROUPS:
        for option in sorted(p.name[:-5] for p in (conf / group).iterdir() if p.name.endswith(".yaml")):
            found[f"{group}={option}"] = ("train", [f"{group}={option}", "~experiment"])
    for tool in TOOLS:
        found[tool] = (tool, [])
    return found


def composed(config_name: str, overrides: list[str]) -> dict:
    """The composed config as plain data, interpolations unresolved, without the hydra section."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("hydra", None)
    return data


def _snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}


@pytest.mark.parametrize("case", sorted(_snapshot()))
def test_composed_config_equals_its_snapshot(case):
    recorded = _snapshot()[case]
    assert composed(recorded["config"], recorded["overrides"]) == recorded["composed"]


@pytest.mark.parametrize("case", sorted(name for name, (config, _) in cases().items() if config == "train"))
def test_every_shipped_config_passes_its_typed_views(case):
    import posttrain.compose  # noqa: F401  (registers the config resolvers)
    from posttrain.schema import validate

    config, overrides = cases()[case]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        validate(compose(config_name=config, overrides=overrides))


def write_snapshot() -> None:
    snapshot = {
        name: {"config": config, "overrides": overrides, "composed": composed(config, overrides)}
        for name, (config, overrides) in cases().items()
    }
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1) + "\n")
    print(f"wrote {len(snapshot)} composed configs to {SNAPSHOT}", file=sys.stderr)


if __name__ == "__main__":
    write_snapshot()
