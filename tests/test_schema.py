"""posttrain.schema: each group's typed view names the fields its base YAML documents, and a value out of its
range fails in one line that names the key, the range and a fix."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from posttrain.errors import PosttrainError
from posttrain.schema import Dataset, Hardware, Knobs, Model, Peft, Training, validate

CONF = Path(__file__).resolve().parents[1] / "conf"


def names(view) -> set[str]:
    return {spec.name for spec in fields(view)}


def test_each_view_names_fields_its_base_yaml_documents():
    assert names(Dataset) == set(OmegaConf.load(CONF / "dataset" / "local.yaml"))
    assert names(Model) == set(OmegaConf.load(CONF / "hub_model.yaml")) - {"published_parameters"}
    assert names(Peft) == set(OmegaConf.load(CONF / "peft" / "lora.yaml"))
    assert names(Training) == set(OmegaConf.load(CONF / "training" / "default.yaml"))
    assert names(Hardware) <= set(OmegaConf.load(CONF / "hardware" / "auto.yaml"))
    assert names(Knobs) <= set(OmegaConf.load(CONF / "train.yaml"))


@pytest.mark.parametrize(("group", "values", "message"), [
    ("dataset", {"eval_fraction": 1}, "dataset.eval_fraction must be a number in [0, 1), got 1"),
    ("peft", {"lora_dropout": -0.1}, "peft.lora_dropout must be a number in [0, 1), got -0.1"),
    ("model", {"init": "warm"}, "model.init must be auto, pretrained or random, got 'warm'"),
    ("hardware", {"device": "tpu"}, "hardware.device must be auto, cpu or cuda, got 'tpu'"),
    ("training", {"gradient_checkpointing": "yes"}, "training.gradient_checkpointing must be true or false, got 'yes'"),
])
def test_a_value_out_of_range_fails_in_one_line(group, values, message):
    with pytest.raises(PosttrainError) as error:
        validate(OmegaConf.create({group: values}), (group,))
    assert error.value.problem == message and error.value.fix


def test_fields_a_group_does_not_have_are_not_checked():
    validate(OmegaConf.create({"peft": {"name": "none"}}), ("peft",))
