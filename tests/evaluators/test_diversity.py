"""The diversity evaluator (eval=diversity, the diversity datasets' default): k sampled completions per prompt,
scored by embedding distance, distinct-n and length, overall and per creativity bucket."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import read_jsonl, read_results, run_posttrain
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalRequest, diversity
from posttrain.evaluators.diversity import DiversityPrompt
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.naming import register_resolvers
from posttrain.scoring.judge import eval_judge_config

LABELS, THRESHOLDS = diversity.parse_buckets(["low", 0.33, "medium", 0.66, "high"])


def test_known_texts_give_their_distinct_1_and_distinct_2():
    texts = ["the cat sat", "The cat ran away"]
    # words: the cat sat the cat ran away -> 7, distinct {the, cat, sat, ran, away} = 5
    assert diversity.distinct_n(texts, 1) == pytest.approx(5 / 7)
    # bigrams within each text: (the cat) (cat sat) | (the cat) (cat ran) (ran away) -> 5, distinct 4
    assert diversity.distinct_n(texts, 2) == pytest.approx(4 / 5)
    assert diversity.distinct_n(["one", ""], 2) == 0.0  # no text has two words


def test_identical_completions_have_no_diversity():
    same = ["a quiet harbour at dawn"] * 4
    # every word and bigram is repeated k = 4 times: the minimum, 1/k
    assert diversity.distinct_n(same, 1) == pytest.approx(1 / 4)
    assert diversity.distinct_n(same, 2) == pytest.approx(1 / 4)
    different = ["a quiet harbour at dawn", "tax forms are due in April", "the dragon sneezed", "7 x 8 = 56"]
    scores = diversity.embedding_diversities([same, different], None, "cpu")
    assert scores[0] == pytest.approx(0.0, abs=1e-5)
    assert scores[1] > 0.5


def test_numeric_creativity_falls_in_the_bucket_of_its_thresholds_and_a_label_is_its_own():
    assert [diversity.bucket_of(c, LABELS, THRESHOLDS) for c in (0.0, 0.1, 0.33, 0.5, 0.66, 0.9, 1.0, 7)] == [
        "low", "low", "medium", "medium", "high", "high", "high", "high"]
    assert diversity.bucket_of("Very High", LABELS, THRESHOLDS) == "very_high"
    assert diversity.bucket_of(None, LABELS, THRESHOLDS) is None
    assert diversity.bucket_of(0.7, *diversity.parse_buckets(["dull", 0.8, "wild"])) == "dull"


def test_buckets_that_are_not_a_number_line_are_one_line_naming_the_fix():
    for spec in (["low", 0.5], ["low", "high", "x"], ["low", 0.6, "mid", 0.3, "high"]):
        with pytest.raises(PosttrainError) as error:
            diversity.parse_buckets(spec)
        assert "\n" not in error.value.line() and "Fix: set eval.buckets=[low,0.33,medium,0.66,high]" in error.value.line()


def test_metrics_are_averaged_over_prompts_overall_and_per_bucket():
    records = [
        {"bucket": "low", "embedding_diversity": 0.1, "distinct_1": 0.2},
        {"bucket": "high", "embedding_diversity": 0.5, "distinct_1": 1.0},
        {"bucket": "low", "embedding_diversity": 0.3, "distinct_1": 0.4},
        {"bucket": None, "embedding_diversity": 0.7, "distinct_1": 0.6},
    ]
    metrics = diversity.aggregate(records, ("embedding_diversity", "distinct_1"))
    assert metrics == pytest.approx({
        "embedding_diversity": 0.4, "distinct_1": 0.55, "diversity_prompts": 4,
        "embedding_diversity/creativity_low": 0.2, "distinct_1/creativity_low": 0.3, "diversity_prompts/creativity_low": 2,
        "embedding_diversity/creativity_high": 0.5, "distinct_1/creativity_high": 1.0,
        "diversity_prompts/creativity_high": 1})
    assert list(metrics)[:3] == ["embedding_diversity", "distinct_1", "diversity_prompts"]


def test_the_shipped_prompts_span_the_three_buckets_and_a_small_subset_still_does():
    prompts = diversity.read_diversity_prompts(diversity.shipped_prompts(), LABELS, THRESHOLDS)
    assert len(prompts) == 24
    assert {p.bucket for p in prompts} == {"low", "medium", "high"}
    subset = diversity.spread_subset(prompts, 3, seed=42)
    assert {p.bucket for p in subset} == {"low", "medium", "high"}
    assert subset == diversity.spread_subset(prompts, 3, seed=42)  # the same seeded subset each time
    assert [prompts.index(p) for p in subset] == sorted(prompts.index(p) for p in subset)  # in file order


def test_a_users_file_may_give_labels_or_no_creativity(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"prompt": "Name a river.", "creativity": "factual"}\n\n{"prompt": "Sing.", "creativity": 0.9}\n'
                    '{"prompt": "Anything."}\n')
    assert diversity.read_diversity_prompts(path, LABELS, THRESHOLDS) == [
        DiversityPrompt("Name a river.", "factual", "factual"), DiversityPrompt("Sing.", 0.9, "high"),
        DiversityPrompt("Anything.", None, None)]


@pytest.mark.parametrize("content, problem", [
    ('{"prompt": "ok"}\n{"prompt": \n', "line 2 is not valid JSON"),
    ('{"text": "no prompt field"}\n', 'line 1 has no "prompt" text'),
    ('{"prompt": "x", "creativity": [1]}\n', "line 1 has creativity [1], not a number or a label"),
    ("\n", "holds no prompt"),
])
def test_a_bad_prompts_file_is_one_line_naming_the_line(tmp_path, content, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PosttrainError) as error:
        diversity.read_diversity_prompts(path, LABELS, THRESHOLDS)
    line = error.value.line()
    assert line.startswith(f"eval.prompts {path} {problem}") and "Fix: write one JSON object per line" in line
    assert "\n" not in line


def test_a_missing_prompts_file_and_bad_sampling_fields_fail_before_any_sampling(tmp_path):
    with pytest.raises(PosttrainError, match=r"eval.prompts .*nope.jsonl does not exist"):
        diversity.read_diversity_prompts(tmp_path / "nope.jsonl", LABELS, THRESHOLDS)
    settings = {"k": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 64}
    diversity.check_settings(settings)
    for key, value, problem in (("k", 1, "at least 2 completions"), ("temperature", 0, "needs sampling"),
                                ("top_p", 1.5, r"not in \(0, 1\]"), ("max_new_tokens", 0, "not a positive integer")):
        with pytest.raises(PosttrainError, match=problem):
            diversity.check_settings({**settings, key: value})


def test_the_judge_is_posttrain_pairs_judge_with_its_defaults_or_the_fields_given():
    assert eval_judge_config(False) is None
    cfg = eval_judge_config(True)
    assert cfg.judge.model == "smollm2-135m" and "{response}" in cfg.judge.question and cfg.batch_size == 16
    assert eval_judge_config({"answer_prefix": "Score: "}).judge.answer_prefix == "Score: "
    with pytest.raises(PosttrainError, match="eval.judge has unknown field modle"):
        eval_judge_config({"modle": "x"})


def test_seeded_samples_repeat_and_the_judges_ratings_are_averaged(monkeypatch):
    register_resolvers()
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=["~experiment", "model=tiny", "eval=diversity", "eval.k=3",
                                                      "eval.max_new_tokens=6", "eval.judge=true"])
    tokenizer = load_tokenizer(cfg.model)
    torch.manual_seed(0)
    model = load_model(cfg.model, tokenizer, torch.float32).train()
    judged = []

    def fake_judge(prompts, judge_cfg, device):  # posttrain.pairs' judge_scores, without loading SmolLM2
        judged.append(judge_cfg.judge.model)
        return [[1.0 + i for i in range(len(p.responses))] for p in prompts]

    monkeypatch.setattr("posttrain.scoring.judge.judge_scores", fake_judge)
    monkeypatch.setattr(diversity, "embedding_diversities", lambda groups, embedder, device: [0.5] * len(groups))
    settings = OmegaConf.to_container(cfg.eval, resolve=True)
    before = torch.random.get_rng_state()
    first = diversity.evaluate(model, tokenizer, EvalRequest(settings, cfg.dataset, 7, limit=3))
    assert torch.equal(torch.random.get_rng_state(), before) and model.training  # a training run is left as it was
    again = diversity.evaluate(model, tokenizer, EvalRequest(settings, cfg.dataset, 7, limit=3))
    assert first.samples == again.samples and first.metrics == again.metrics
    assert judged == ["smollm2-135m"] * 2
    assert first.metrics["judge_quality"] == pytest.approx(2.0)  # ratings 1, 2, 3 per prompt
    assert first.metrics["judge_quality/creativity_low"] == pytest.approx(2.0)
    assert all(len(s["completions"]) == 3 and s["judge_ratings"] == [1.0, 2.0, 3.0] for s in first.samples)
    assert all(0 < s["mean_completion_tokens"] <= 6 for s in first.samples)
    assert list(first.metrics)[:6] == ["embedding_diversity", "distinct_1", "distinct_2", "mean_completion_tokens",
                                       "diversity_prompts", "judge_quality"]


@pytest.mark.slow
def test_dpo_with_eval_diversity_writes_its_metrics_and_samples(workdir):
    pairs = workdir / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Say something about {topic}.", "chosen": f"{topic} is odd.",
                                         "rejected": f"{topic}."}) + "\n" for topic in ("rain", "tea", "maps", "owls") * 4))
    result = run_posttrain(["method=dpo", "dataset=local", f"dataset.path={pairs}", "eval=diversity", "eval.k=2",
                            "eval.limit=3", "eval.max_new_tokens=16", "model=tiny", "max_steps=2", "batch_size=4",
                            "run_name=diverse"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "diverse"
    results = read_results(run)
    assert results["diversity_prompts"] == 3
    assert 0.0 <= results["embedding_diversity"] <= 2.0
    assert 0.0 < results["distinct_1"] <= 1.0 and 0.0 <= results["distinct_2"] <= 1.0
    assert 0 < results["mean_completion_tokens"] <= 16
    assert "judge_quality" not in results
    assert {key for key in results if key.startswith("diversity_prompts/")} == {
        "diversity_prompts/creativity_low", "diversity_prompts/creativity_medium", "diversity_prompts/creativity_high"}
    samples = read_jsonl(run / "samples.jsonl")
    assert len(samples) == 3 and all(len(s["completions"]) == 2 for s in samples)
    assert {s["bucket"] for s in samples} == {"low", "medium", "high"}
    assert sum(s["distinct_1"] for s in samples) / 3 == pytest.approx(results["distinct_1"])
