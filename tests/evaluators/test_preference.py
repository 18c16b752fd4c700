"""eval=preference: the margin arithmetic, a LoRA model measured against its own base (an untrained adapter
prefers nothing), the plain margin without a reference, a reward model's scores, and a run's results."""

from __future__ import annotations

import pytest
import torch
from conftest import read_jsonl, read_results, run_posttrain
from hydra import compose, initialize_config_module
from peft import LoraConfig, get_peft_model

from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalRequest, preference
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.naming import register_resolvers


def config(*overrides: str, data=("dataset=tictactoe_dpo", "dataset.thoughts=false")):
    register_resolvers()
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["~experiment", "method=dpo", *data, "eval=preference", *overrides])


def request(*overrides: str, **settings) -> EvalRequest:
    """The eval=preference request of config(*overrides), with `settings` set over its fields."""
    cfg = config(*overrides)
    return EvalRequest.from_config(cfg.eval, cfg.dataset, cfg.seed, **settings)


@pytest.fixture(scope="module")
def tiny():
    cfg = config()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(cfg.model)
    return load_model(cfg.model, tokenizer, torch.float32), tokenizer


def test_margins_and_accuracy_from_known_log_probabilities():
    margins = preference.implicit_margins([-1.0, -2.0, -3.0], [-2.0, -1.0, -3.0], [-1.5, -2.0, -3.0],
                                          [-1.5, -2.0, -3.0], beta=0.5)
    assert margins == pytest.approx([0.5, -0.5, 0.0])  # 0.5 x ((-1 + 1.5) - (-2 + 1.5))
    assert preference.implicit_margins([-1.0, -2.0], [-3.0, -1.0], None, None, beta=0.5) == [2.0, -1.0]
    metrics = preference.preference_metrics([0.25, -0.25, 0.0, 1.0])
    assert metrics == {"preference_accuracy": 0.5, "preference_margin": 0.25, "preference_pairs": 4}


def test_an_untrained_adapter_prefers_nothing_against_its_base(tiny):
    model, tokenizer = tiny
    cfg = config("eval.limit=12")
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))  # B = 0: the base's outputs
    output = preference.evaluate(lora, tokenizer, EvalRequest.from_config(cfg.eval, cfg.dataset, cfg.seed))
    assert output.metrics["preference_pairs"] == 12
    assert output.metrics["preference_margin"] == pytest.approx(0.0, abs=1e-5)
    assert output.metrics["preference_accuracy"] == 0.0  # a tie is no preference
    assert {s["scored_by"] for s in output.samples} == {"implicit reward"}
    lora.unload()


def test_without_a_reference_the_log_probability_margin_is_reported(tiny):
    model, tokenizer = tiny
    output = preference.evaluate(model, tokenizer, request("eval.limit=6"))
    chosen = [s["chosen"] for s in output.samples]
    assert output.metrics["preference_pairs"] == 6 and len(set(chosen)) >= 1
    assert {s["scored_by"] for s in output.samples} == {"log-probability margin"}
    first = output.samples[0]
    expected = (preference.completion_logprobs(model, tokenizer, [(first["prompt"], first["chosen"])])[0]
                - preference.completion_logprobs(model, tokenizer, [(first["prompt"], first["rejected"])])[0])
    assert first["margin"] == pytest.approx(expected, abs=1e-4)


def test_a_reward_model_scores_the_pairs_itself(tiny, monkeypatch):
    _, tokenizer = tiny
    cfg = config("eval.limit=4")

    class FakeRewardModel(torch.nn.Module):
        device = torch.device("cpu")

        def can_generate(self):
            return False

        def forward(self, input_ids, attention_mask):  # longer texts score higher
            return type("Out", (), {"logits": attention_mask.sum(dim=1, keepdim=True).float()})()

    output = preference.evaluate(FakeRewardModel(), tokenizer, EvalRequest.from_config(cfg.eval, cfg.dataset, cfg.seed))
    lengths = [(len(tokenizer(s["prompt"] + s["chosen"])["input_ids"]), len(tokenizer(s["prompt"] + s["rejected"])["input_ids"]))
               for s in output.samples]
    assert [s["margin"] for s in output.samples] == [float(c - r) for c, r in lengths]
    assert {s["scored_by"] for s in output.samples} == {"reward model"}


def test_a_dataset_without_an_eval_split_is_one_line(tiny, tmp_path):
    model, tokenizer = tiny
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": " a", "rejected": " b"}\n' * 4)
    cfg = config(data=("dataset=local", f"dataset.path={pairs}", "dataset.eval_fraction=0"))
    with pytest.raises(PosttrainError, match="eval=preference scores the eval split"):
        preference.evaluate(model, tokenizer, EvalRequest.from_config(cfg.eval, cfg.dataset, cfg.seed))


@pytest.mark.slow
def test_a_dpo_run_reports_the_preference_of_its_policy(tmp_path):
    result = run_posttrain(["method=dpo", "dataset=tictactoe_dpo", "dataset.thoughts=false", "eval=preference",
                            "eval.limit=40", "max_steps=4", "batch_size=8", "lora_rank=8", "logger=none",
                            "training.save_steps=0", "run_name=p"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path / "outputs" / "p")
    assert results["preference_pairs"] == 40 and 0 <= results["preference_accuracy"] <= 1
    samples = read_jsonl(tmp_path / "outputs" / "p" / "samples.jsonl")
    assert len(samples) == 40 and {s["scored_by"] for s in samples} == {"implicit reward"}


def test_win_rate_counts_wins_and_half_ties():
    assert preference.win_rate([3.0, 1.0, 2.0, 5.0], [1.0, 2.0, 2.0, 4.0]) == pytest.approx(0.625)


def test_an_untrained_adapter_ties_its_base_under_a_judge(tiny, monkeypatch):
    """The model and its base answer each prompt with the same seed: an adapter with B = 0 answers exactly as
    the base, so every prompt is a tie and the win rate is one half."""
    model, tokenizer = tiny
    scored = []

    def judge(prompts, answers, settings, device):  # a stand-in judge: longer is better
        scored.append(answers)
        return [[float(len(a)) for a in group] for group in answers]

    monkeypatch.setattr(preference, "answer_scores", judge)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    output = preference.evaluate(lora, tokenizer, request("eval.limit=8", judge=True, win_rate_prompts=5, max_new_tokens=8))
    assert len(scored[0]) == 5 and all(answer == reference for answer, reference in scored[0])
    assert output.metrics["preference_win_rate"] == 0.5
    answered = [s for s in output.samples if "reference_answer" in s]
    assert len(answered) == 5 and all(s["answer_score"] == s["reference_score"] for s in answered)

    # a changed adapter answers differently, and the win rate is the judge's verdict on those answers
    with torch.no_grad():
        for name, weight in lora.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    output = preference.evaluate(lora, tokenizer, request("eval.limit=8", judge=True, win_rate_prompts=5, max_new_tokens=8))
    answered = [s for s in output.samples if "reference_answer" in s]
    assert any(s["answer"] != s["reference_answer"] for s in answered)
    expected = preference.win_rate([s["answer_score"] for s in answered], [s["reference_score"] for s in answered])
    assert output.metrics["preference_win_rate"] == expected
    lora.unload()


def test_win_rate_settings_are_checked_before_training(tmp_path):
    preference.check({"judge": False, "reward_model": None, "win_rate_prompts": 16})
    with pytest.raises(PosttrainError, match="eval.judge and eval.reward_model both score the win rate"):
        preference.check({"judge": True, "reward_model": str(tmp_path)})
    with pytest.raises(PosttrainError, match="is not a posttrain run directory"):
        preference.check({"reward_model": str(tmp_path)})
    with pytest.raises(PosttrainError, match="eval.win_rate_prompts=0 is not a positive integer"):
        preference.check({"win_rate_prompts": 0})
    with pytest.raises(PosttrainError, match="eval.judge has unknown field"):
        preference.check({"judge": {"nope": 1}})


def test_a_bad_win_rate_setting_stops_a_run_before_training(tmp_path):
    result = run_posttrain(["method=dpo", "eval=preference", "eval.win_rate_prompts=0", "max_steps=1"], tmp_path)
    assert result.returncode != 0
    assert "posttrain: error: eval.win_rate_prompts=0 is not a positive integer" in result.stderr
    assert not list(tmp_path.rglob("results.json"))


@pytest.mark.slow
def test_the_offline_judge_rates_a_lora_model_against_its_base(tiny):
    """The real judge (SmolLM2-135M, offline) rates both answers of each prompt on its 1-9 scale."""
    model, tokenizer = tiny
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    output = preference.evaluate(lora, tokenizer, request("eval.limit=8", judge=True, win_rate_prompts=2, max_new_tokens=6))
    assert output.metrics["preference_win_rate"] == 0.5  # identical answers: identical ratings
    assert 1.0 <= output.metrics["win_rate_model_score"] <= 9.0
    assert output.metrics["win_rate_model_score"] == output.metrics["win_rate_reference_score"]
    lora.unload()
