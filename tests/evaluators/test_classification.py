"""The classification evaluator (eval=classification, dataset=nli's default): each eval row's label is the
candidate the model scores most likely; accuracy, macro-F1 and the confusion matrix follow."""

from __future__ import annotations

import pytest
import torch
from conftest import read_jsonl, read_results, run_posttrain
from hydra import compose, initialize_config_module

from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalRequest, classification
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.naming import register_resolvers


def nli_config(*overrides: str):
    register_resolvers()
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["experiment=nli_qlora_minimal_test", *overrides])


@pytest.fixture(scope="module")
def tiny():
    cfg = nli_config()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg.model)
    return load_model(cfg.model, tokenizer, torch.float32), tokenizer


def test_a_known_confusion_matrix_gives_its_accuracy_and_macro_f1():
    gold = ["cat"] * 5 + ["dog"] * 3 + ["fox"] * 2
    predicted = ["cat", "cat", "cat", "cat", "dog", "dog", "dog", "cat", "cat", "fox"]
    confusion = classification.confusion_matrix(gold, predicted)
    assert confusion == {"cat": {"cat": 4, "dog": 1}, "dog": {"dog": 2, "cat": 1}, "fox": {"cat": 1, "fox": 1}}
    metrics = classification.label_metrics(confusion)
    # F1 per gold label: cat 2*4/(6+5) = 8/11, dog 2*2/(3+3) = 2/3, fox 2*1/(1+2) = 2/3
    assert metrics["label_accuracy"] == pytest.approx(7 / 10)
    assert metrics["label_macro_f1"] == pytest.approx((8 / 11 + 2 / 3 + 2 / 3) / 3)
    assert metrics["labelled_rows"] == 10


def test_a_label_never_predicted_counts_as_f1_zero_and_one_never_gold_is_not_averaged():
    metrics = classification.label_metrics({"a": {"b": 2}, "c": {"c": 2}})
    # a: F1 0; c: F1 1; b (predicted, never gold) is not one of the averaged labels
    assert metrics == {"label_accuracy": 0.5, "label_macro_f1": 0.5, "labelled_rows": 4}


def test_batched_scores_equal_the_log_probs_of_the_completion_tokens_one_pair_at_a_time(tiny):
    model, tokenizer = tiny
    pairs = [("Premise: a\nAnswer:", " entailment"), ("Premise: a much longer prompt\nAnswer:", " neutral"),
             ("Q:", " contradiction")]
    batched = classification.completion_logprobs(model, tokenizer, pairs, batch_size=3)
    for (prompt, completion), score in zip(pairs, batched):
        ids = tokenizer(prompt + completion)["input_ids"]
        tail = len(ids) - len(tokenizer(prompt)["input_ids"])
        assert tail == len(tokenizer(completion, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
        expected = sum(logp[p - 1, ids[p]].item() for p in range(len(ids) - tail, len(ids)))
        assert score == pytest.approx(expected, abs=1e-4)


def test_each_row_gets_the_label_of_highest_log_prob(tiny, monkeypatch):
    cfg = nli_config()
    scored = {}

    def fake_scores(model, tokenizer, pairs, batch_size=16):
        scored["pairs"] = pairs
        # " neutral" scores highest for every prompt whose premise mentions a dog, " entailment" otherwise
        return [(-1.0 if (label == " neutral") == ("dog" in prompt) else -5.0) - len(label) / 100
                for prompt, label in pairs]

    monkeypatch.setattr(classification, "completion_logprobs", fake_scores)
    output = classification.evaluate(*tiny, EvalRequest.from_config(cfg.eval, cfg.dataset, cfg.seed))
    assert {label for _, label in scored["pairs"]} == {" contradiction", " entailment", " neutral"}  # its spacing
    for sample in output.samples:
        assert sample["predicted"] == ("neutral" if "dog" in sample["prompt"] else "entailment")
        assert max(sample["label_logprobs"], key=sample["label_logprobs"].get) == sample["predicted"]
    right = sum(s["gold"] == s["predicted"] for s in output.samples)
    assert output.metrics["label_accuracy"] == pytest.approx(right / len(output.samples))
    assert output.metrics["labelled_rows"] == 24
    assert sum(sum(row.values()) for row in output.metrics["label_confusion"].values()) == 24


def test_with_one_candidate_label_every_row_is_predicted_as_it(tiny):
    cfg = nli_config()
    output = classification.evaluate(*tiny, EvalRequest.from_config(cfg.eval, cfg.dataset, cfg.seed, labels=["neutral"], limit=6))
    assert [s["predicted"] for s in output.samples] == ["neutral"] * 6
    neutral = sum(s["gold"] == "neutral" for s in output.samples)
    assert output.metrics["label_accuracy"] == pytest.approx(neutral / 6)
    assert output.metrics["labelled_rows"] == 6


def test_the_limit_is_the_same_seeded_subset_each_time(tiny):
    cfg = nli_config()
    first = classification.evaluate(*tiny, EvalRequest({"labels": None}, cfg.dataset, 42, limit=5))
    second = classification.evaluate(*tiny, EvalRequest({"labels": None}, cfg.dataset, 42, limit=5))
    assert [s["prompt"] for s in first.samples] == [s["prompt"] for s in second.samples]
    assert first.metrics == second.metrics and first.metrics["labelled_rows"] == 5


def test_a_dataset_without_an_eval_split_is_one_line_naming_the_fix(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"premise": "p", "hypothesis": "h", "label": 0}\n' * 4)
    cfg = nli_config(f"dataset.path={tmp_path / 'train.jsonl'}", "dataset.eval_path=null", "dataset.eval_fraction=0")
    with pytest.raises(PosttrainError) as error:
        classification.evaluate(None, None, EvalRequest.from_config(cfg.eval, cfg.dataset, cfg.seed))
    assert error.value.line() == (
        "eval=classification scores the eval split of dataset nli, and it has none. Fix: set "
        "dataset.eval_path=FILE, or dataset.eval_fraction above 0 to hold out training rows.")


@pytest.mark.slow
def test_sft_on_nli_writes_the_label_metrics_and_choices(workdir):
    result = run_posttrain(["experiment=nli_qlora_minimal_test", "max_steps=4", "training.eval_steps=2",
                            "run_name=nli"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "nli"
    results = read_results(run)
    assert 0.0 <= results["label_accuracy"] <= 1.0 and 0.0 <= results["label_macro_f1"] <= 1.0
    assert results["labelled_rows"] == 24
    confusion = results["label_confusion"]
    assert set(confusion) <= {"entailment", "neutral", "contradiction"}
    assert sum(sum(row.values()) for row in confusion.values()) == 24
    samples = read_jsonl(run / "samples.jsonl")
    assert len(samples) == 24
    assert all(s["gold"] in confusion and s["predicted"] in s["label_logprobs"] for s in samples)
    during = [m for m in read_jsonl(run / "metrics.jsonl") if "eval/label_accuracy" in m]
    assert [m["step"] for m in during] == [2, 4]
