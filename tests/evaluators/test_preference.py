"""eval=preference: the margin arithmetic, a LoRA model measured against its own base (an untrained adapter
prefers nothing), the plain margin without a reference, a reward model's scores, and a run's results."""

from __future__ import annotations

import pytest
import torch
from conftest import read_jsonl, read_results, run_posttrain
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model

from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalRequest, preference
from posttrain.models.loading import load_model, load_tokenizer
from posttrain.naming import register_resolvers


def config(*overrides: str, data=("dataset=tictactoe_dpo", "dataset.thoughts=false")):
    register_resolvers()
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["~experiment", "method=dpo", *data, "eval=preference", *overrides])


def request_for(cfg, **settings) -> EvalRequest:
    return EvalRequest({**OmegaConf.to_container(cfg.eval, resolve=True), **settings}, cfg.dataset, int(cfg.seed))


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
    output = preference.evaluate(lora, tokenizer, request_for(cfg))
    assert output.metrics["preference_pairs"] == 12
    assert output.metrics["preference_margin"] == pytest.approx(0.0, abs=1e-5)
    assert output.metrics["preference_accuracy"] == 0.0  # a tie is no preference
    assert {s["scored_by"] for s in output.samples} == {"implicit reward"}
    lora.unload()


def test_without_a_reference_the_log_probability_margin_is_reported(tiny):
    model, tokenizer = tiny
    output = preference.evaluate(model, tokenizer, request_for(config("eval.limit=6")))
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

    output = preference.evaluate(FakeRewardModel(), tokenizer, request_for(cfg))
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
        preference.evaluate(model, tokenizer, request_for(cfg))


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
