"""A named option (a mixture source's `dataset: nli`, the judge's `judge.model=...`) is the option as the
command line would compose it: its defaults list applied, the same inside and outside a running Hydra app."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from posttrain.errors import PosttrainError
from posttrain.options import group_option, group_options


def test_an_option_carries_the_fields_of_the_base_it_extends():
    local = group_option("dataset", "local", "unknown dataset")
    nli = group_option("dataset", "nli", "unknown dataset")
    assert nli.name == "nli" and nli.template.completion == " {label}"
    assert set(local) <= set(nli) and nli.skip_bad_rows == local.skip_bad_rows
    assert not OmegaConf.is_struct(nli)  # a mixture source's own fields merge onto it


def test_an_option_equals_the_group_as_the_command_line_composes_it():
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        picked = compose(config_name="train", overrides=["dataset=nli", "~experiment"]).dataset
        inside = group_option("dataset", "nli", "unknown dataset")  # inside an initialized Hydra
    assert OmegaConf.to_container(inside) == OmegaConf.to_container(picked)


def test_an_unknown_option_names_the_choices():
    with pytest.raises(PosttrainError) as caught:
        group_option("dataset", "nope", "mixture source names unknown dataset")
    assert caught.value.line().startswith("mixture source names unknown dataset 'nope'. Fix: choose one of: ")
    assert "nli" in caught.value.line() and "nli" in group_options("dataset")
