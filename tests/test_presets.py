"""Every experiment preset composes, and every method it names (its own or a stage's) is registered, so a
typo in a preset fails here rather than minutes into a pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from posttrain.registry import METHODS

PRESETS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))


def test_the_guides_presets_are_all_there():
    for name in ("tictactoe", "tictactoe_sft", "tictactoe_dpo", "tictactoe_grpo", "diversity_dpo", "nli_qlora",
                 "nli_qlora_minimal_test", "minimind_posttrain"):
        assert name in PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_registered_methods(preset):
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={preset}"])
    assert cfg.method.name in METHODS
    for name, settings in (cfg.get("stages") or {}).items():
        assert settings["method"] in METHODS, (preset, name)
        assert all(key != "stages" for key in settings), (preset, name)
