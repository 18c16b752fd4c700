"""Every user-facing field under conf/ has a comment on the line directly above it, saying what it does (and
its unit or range), as in verl's trainer configs.

Exempt, because the comment is elsewhere: `defaults:` lists; a field an option sets again over the base it
extends through its defaults list (the base's comment covers it, e.g. dataset=nli's `name:` under
conf/dataset/local.yaml); in an experiment preset (`# @package _global_`), the group keys that lead to the
fields it sets (`training:` above `eval_steps:`); a field alone under a commented key (`method:` ->
`args:` -> `loss_type:`); the entries of flow-style values ({...}, [...]); the keys under `architecture:`
(transformers' config.json names), `stages:` (stage names) and `hydra.sweeper.params` (config keys with
their sweep ranges). Hydra's own settings (conf/hydra/) follow Hydra's documentation and are not checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CONF = Path(__file__).resolve().parents[1] / "conf"
# Mappings whose keys are named by someone else: their fields need no comment of their own.
FOREIGN = {"architecture", "stages", "params"}
FILES = sorted(p for p in CONF.rglob("*.yaml") if p.relative_to(CONF).parts[0] != "hydra")


def _base_files(path: Path) -> list[Path]:
    """The configs `path` extends through its defaults list: siblings (`- local`) and absolute ones
    (`- /hub_model@_here_`); group overrides (`- override /model: tiny`) and `_self_` are not bases."""
    data = yaml.safe_load(path.read_text()) or {}
    bases = []
    for entry in data.get("defaults") or []:
        if not isinstance(entry, str) or entry == "_self_":
            continue
        name = entry.split("@")[0]
        bases.append(CONF / f"{name[1:]}.yaml" if name.startswith("/") else path.parent / f"{name}.yaml")
    return bases


def _keys(data, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in (data or {}).items():
        keys.add(prefix + str(key))
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def inherited_keys(path: Path) -> set[str]:
    """Dotted keys that `path`'s bases already define (and document)."""
    keys = set()
    for base in _base_files(path):
        keys |= _keys(yaml.safe_load(base.read_text())) | inherited_keys(base)
    return keys


def uncommented_fields(path: Path) -> list[str]:
    """Fields of `path` without a comment line directly above them, as 'line N: dotted.key'."""
    lines = path.read_text().splitlines()
    preset = bool(lines) and lines[0].strip() == "# @package _global_"
    inherited = inherited_keys(path)
    found = []

    def walk(node: yaml.Node, prefix: str, covered: bool) -> None:
        if not isinstance(node, yaml.MappingNode) or node.flow_style:
            return
        for key_node, value_node in node.value:
            key = prefix + str(key_node.value)
            line = key_node.start_mark.line
            documented = covered or (line > 0 and lines[line - 1].strip().startswith("#"))
            leads_on = preset and isinstance(value_node, yaml.MappingNode) and not value_node.flow_style
            if not (documented or leads_on or key == "defaults" or key in inherited):
                found.append(f"line {line + 1}: {key}")
            if str(key_node.value) not in FOREIGN:
                walk(value_node, key + ".", documented and len(getattr(value_node, "value", [])) == 1)

    walk(yaml.compose(path.read_text()), "", False)
    return found


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CONF)))
def test_every_field_has_a_comment_above_it(path):
    assert uncommented_fields(path) == [], f"{path.relative_to(CONF)}: add a comment line above each field"


def test_an_option_that_extends_a_base_needs_no_comment_on_the_fields_it_sets_again():
    nli = CONF / "dataset" / "nli.yaml"
    assert "name" in inherited_keys(nli) and "template" not in inherited_keys(nli)
    assert "published_parameters" in inherited_keys(CONF / "model" / "qwen3-4b.yaml")
