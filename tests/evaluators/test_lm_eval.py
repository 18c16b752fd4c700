"""The lm-evaluation-harness evaluator (eval=lm_eval) on the shipped offline task posttrain_arith (a task
YAML over a local JSONL file): metric keys, samples, the errors a user meets. The tests that run the harness
are skipped when lm-evaluation-harness is not installed (pip install -e '.[eval]')."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch
from conftest import read_jsonl, read_results, run_posttrain
from omegaconf import OmegaConf

from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalRequest
from posttrain.evaluators import lm_eval as lm_eval_evaluator
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.naming import example_file

CONF = Path(__file__).resolve().parents[2] / "conf"
TASK_FOLDER = example_file("lm_eval_task")
ROWS = [json.loads(line) for line in (Path(TASK_FOLDER) / "posttrain_arith.jsonl").read_text().splitlines()]


def request(request_limit: int | None = None, **settings) -> EvalRequest:
    """eval=lm_eval's settings (conf/eval/lm_eval.yaml) with the shipped task, changed by `settings`;
    `request_limit`: the cap of an evaluation during training (eval.training_limit)."""
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / "eval" / "lm_eval.yaml"))
    defaults.update(tasks=["posttrain_arith"], include_path=TASK_FOLDER)
    return EvalRequest({**defaults, **settings}, OmegaConf.create({}), seed=0, limit=request_limit)


@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("lm_eval")
    model_cfg = OmegaConf.load(CONF / "model" / "tiny.yaml")
    torch.manual_seed(0)
    tokenizer = load_tokenizer(model_cfg)
    return load_model(model_cfg, tokenizer, torch.float32), tokenizer


def test_metric_keys_drop_the_default_filter_and_keep_the_others():
    results = {"posttrain_arith": {"alias": "posttrain_arith", "sample_len": 5, "acc,none": 0.4,
                                   "acc_stderr,none": 0.2449, "acc_norm_stderr,none": "N/A"},
               "gsm8k": {"exact_match,strict-match": 0.25, "exact_match,flexible-extract": 0.5}}
    metrics = lm_eval_evaluator.task_metrics(results)
    assert list(metrics.items()) == [
        ("lm_eval/posttrain_arith/acc", 0.4), ("lm_eval/posttrain_arith/acc_stderr", 0.2449),
        ("lm_eval/gsm8k/exact_match/strict-match", 0.25), ("lm_eval/gsm8k/exact_match/flexible-extract", 0.5),
        ("lm_eval/posttrain_arith/sample_len", 5)]  # the headline first, the counts last


def test_without_the_harness_installed_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` now raises ImportError
    with pytest.raises(PosttrainError) as err:
        lm_eval_evaluator.evaluate(None, None, request())
    assert err.value.problem == "eval=lm_eval needs lm-evaluation-harness"
    assert err.value.fix == "pip install -e '.[eval]'"


def test_an_empty_task_list_and_a_missing_folder_are_one_line_errors():
    with pytest.raises(PosttrainError) as err:
        lm_eval_evaluator.task_settings(request(tasks=[]).settings)
    assert err.value.problem == "eval=lm_eval has no task to run (eval.tasks=[])"
    assert "eval.tasks=[posttrain_arith] eval.include_path='${posttrain.example:lm_eval_task}'" in err.value.fix
    with pytest.raises(PosttrainError, match="eval.include_path=no/such/folder is not a folder"):
        lm_eval_evaluator.task_settings(request(include_path="no/such/folder").settings)


def test_the_shipped_task_scores_the_tiny_model_from_any_working_directory(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    model.train()
    monkeypatch.chdir(tmp_path)  # the task finds its JSONL from its own folder, not the working directory
    random.seed(11)
    torch.manual_seed(11)
    python_state, torch_state = random.getstate(), torch.get_rng_state()

    output = lm_eval_evaluator.evaluate(model, tokenizer, request(limit=8))

    metrics = output.metrics
    assert metrics["lm_eval/posttrain_arith/sample_len"] == 8
    assert 0.0 <= metrics["lm_eval/posttrain_arith/acc"] <= 1.0
    assert 0.0 <= metrics["lm_eval/posttrain_arith/acc_norm"] <= 1.0
    assert len(output.samples) == 8  # the first 8 rows of the file, in order
    for sample, row in zip(output.samples, ROWS):
        assert sample["prompt"] == f"Question: {row['question']}\nAnswer:"
        assert sample["target"] == row["choices"][row["answer"]]
        assert sample["response"] in row["choices"]
        assert sample["acc"] == float(sample["response"] == sample["target"])
    # the headline figure is the mean of the per-example scores
    assert metrics["lm_eval/posttrain_arith/acc"] == pytest.approx(sum(s["acc"] for s in output.samples) / 8)
    # the model is back in training mode, and the harness's seeding left the global generators as they were
    assert model.training
    assert random.getstate() == python_state and torch.equal(torch.get_rng_state(), torch_state)


def test_the_request_limit_of_a_training_evaluation_wins_over_eval_limit(tiny):
    model, tokenizer = tiny
    output = lm_eval_evaluator.evaluate(model, tokenizer, request(request_limit=3, limit=8))
    assert output.metrics["lm_eval/posttrain_arith/sample_len"] == 3 and len(output.samples) == 3


def test_an_unknown_task_is_a_one_line_error_that_says_how_to_list_names(tiny):
    model, tokenizer = tiny
    asked = request(tasks=["posttrain_arith", "no_such_task"])
    with pytest.raises(PosttrainError, match="no_such_task"):  # the check a run can make before training
        lm_eval_evaluator.check(asked.settings)
    with pytest.raises(PosttrainError) as err:
        lm_eval_evaluator.evaluate(model, tokenizer, asked)
    assert err.value.problem == (f"no lm-evaluation-harness task named no_such_task in its own tasks or "
                                 f"eval.include_path={TASK_FOLDER}")
    assert "lm-eval ls tasks" in err.value.fix


def test_a_task_whose_data_is_on_the_hub_fails_offline_with_a_one_line_error(tiny, tmp_path):
    model, tokenizer = tiny
    model.train()
    (tmp_path / "hub_task.yaml").write_text("task: posttrain_hub_task\ndataset_path: posttrain/no_such_dataset\n"
                                            "output_type: multiple_choice\ntest_split: test\n"
                                            "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
                                            "doc_to_target: answer\n")
    with pytest.raises(PosttrainError) as err:  # the tests run with HF_HUB_OFFLINE=1 (conftest.py)
        lm_eval_evaluator.evaluate(model, tokenizer, request(tasks=["posttrain_hub_task"], include_path=str(tmp_path)))
    assert err.value.problem.startswith("eval=lm_eval cannot fetch a task's data: Couldn't reach "
                                        "'posttrain/no_such_dataset'")
    assert "eval.include_path" in err.value.fix
    assert model.training  # put back in training mode on the way out


@pytest.mark.slow
def test_a_run_with_eval_lm_eval_writes_the_task_metric_and_samples(workdir):
    pytest.importorskip("lm_eval")
    result = run_posttrain(["method=sft", "model=tiny", "max_steps=2", "batch_size=8", "dataset.eval_fraction=0.01",
                            "training.save_steps=0",
                            "eval=lm_eval", "eval.tasks=[posttrain_arith]",
                            "eval.include_path=${posttrain.example:lm_eval_task}", "eval.limit=5",
                            "run_name=lm_eval"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "lm_eval"
    results = read_results(run)
    assert 0.0 <= results["lm_eval/posttrain_arith/acc"] <= 1.0
    assert results["lm_eval/posttrain_arith/sample_len"] == 5
    samples = read_jsonl(run / "samples.jsonl")
    assert [s["prompt"] for s in samples] == [f"Question: {row['question']}\nAnswer:" for row in ROWS[:5]]
    assert results["lm_eval/posttrain_arith/acc"] == pytest.approx(sum(s["acc"] for s in samples) / 5)
