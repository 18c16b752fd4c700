"""The method table: one YAML per row, every row's TRL classes exist, and reading the table imports no TRL."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posttrain.learning_rate import TABLE
from posttrain.registry import FORMS, METHODS

CONF_METHOD = Path(__file__).resolve().parents[2] / "conf" / "method"


def test_conf_method_and_the_registry_list_the_same_methods():
    files = {path.stem for path in CONF_METHOD.glob("*.yaml")}
    assert files == set(METHODS)
    for path in CONF_METHOD.glob("*.yaml"):
        assert yaml.safe_load(path.read_text())["name"] == path.stem, path


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_row_names_trl_classes_that_take_what_the_builder_passes(name):
    method = METHODS[name]
    trainer, config = method.trl_classes()
    assert trainer.__name__ == method.trainer.split(":")[1] and config.__name__ == method.config.split(":")[1]
    assert method.form in FORMS and method.family in TABLE[0][2]
    assert method.head in ("causal_lm", "sequence_classification")
    passed = {"model", "args", "train_dataset", "eval_dataset", "processing_class", "peft_config", "callbacks"}
    passed |= {"ref_model"} if method.reference else set()
    passed |= {"reward_funcs", "reward_processing_classes"} if method.rewards else set()
    passed |= {"teacher_model"} if method.teacher else set()
    assert passed <= set(inspect.signature(trainer.__init__).parameters)
    if method.rewards:
        assert "reward_weights" in config.__dataclass_fields__


def test_listing_methods_imports_no_trl():
    code = ("import sys; from posttrain.registry import describe_methods; describe_methods(); "
            "import posttrain.learning_rate; print(any(m == 'trl' or m.startswith('trl.') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
