"""conf/eval/ and the evaluator registry list the same evaluators, and every row's function imports."""

from __future__ import annotations

from importlib.resources import files

from posttrain.registry import EVALUATORS, _import


def test_conf_eval_and_the_registry_list_the_same_names():
    options = sorted(p.name[:-5] for p in files("posttrain.conf").joinpath("eval").iterdir() if p.name.endswith(".yaml"))
    assert options == sorted(EVALUATORS)


def test_every_evaluator_function_and_check_imports():
    for row in EVALUATORS.values():
        for path in (row.function, row.check):
            if path:
                assert callable(_import(path)), path
