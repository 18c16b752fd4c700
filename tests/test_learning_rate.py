"""The default learning rate comes from one table (method family, model size, LoRA or full fine-tuning); the
composed config, and so --cfg job, the run name and config.yaml, carries the number; a number given wins."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from posttrain.checks import check_knobs
from posttrain.learning_rate import (
    BYTE_VOCAB,
    FAMILY_OF,
    TABLE,
    describe,
    estimated_parameters,
    model_parameters,
    table_rate,
)
from posttrain.naming import register_resolvers
from posttrain.registry import METHODS

CONF = Path(__file__).resolve().parents[1] / "src" / "posttrain" / "conf"
MODELS = sorted(path.stem for path in (CONF / "model").glob("*.yaml"))
METHOD_NAMES = sorted(OmegaConf.load(path).name for path in (CONF / "method").glob("*.yaml"))
SIZES = {"tiny": None, "0.5B": 494_032_768, "4B": 4_022_468_096, "7B": 7_241_732_096}


def composed(*overrides: str):
    register_resolvers()
    with initialize_config_module(config_module="posttrain.conf", version_base="1.3"):
        return compose(config_name="train", overrides=["~experiment", *overrides])


@pytest.mark.parametrize(
    "method, size, lora, rate",
    [
        # the tiny model (random init) keeps 5e-4 whatever the method
        ("sft", "tiny", False, 5e-4), ("sft", "tiny", True, 5e-4),
        ("dpo", "tiny", False, 5e-4), ("dpo", "tiny", True, 5e-4),
        ("grpo", "tiny", False, 5e-4), ("grpo", "tiny", True, 5e-4),
        # 0.5B: SFT 2e-5 full, DPO well below (1e-6), LoRA 10x
        ("sft", "0.5B", False, 2e-5), ("sft", "0.5B", True, 2e-4),
        ("dpo", "0.5B", False, 1e-6), ("dpo", "0.5B", True, 1e-5),
        ("grpo", "0.5B", False, 1e-6), ("grpo", "0.5B", True, 1e-5),
        # 4B and 7B: the DPO guide's 1e-5 with LoRA, the NLI guide's 2e-4 (Q)LoRA SFT on Mistral-7B
        ("sft", "4B", False, 1e-5), ("sft", "4B", True, 2e-4),
        ("dpo", "4B", False, 5e-7), ("dpo", "4B", True, 1e-5),
        ("grpo", "4B", False, 1e-6), ("grpo", "4B", True, 1e-5),
        ("sft", "7B", False, 1e-5), ("sft", "7B", True, 2e-4),
        ("dpo", "7B", False, 5e-7), ("dpo", "7B", True, 1e-5),
        ("grpo", "7B", False, 1e-6), ("grpo", "7B", True, 1e-5),
    ],
)
def test_the_table_gives_each_method_size_and_mode_its_rate(method, size, lora, rate):
    parameters = SIZES[size] or model_parameters(OmegaConf.load(CONF / "model" / "tiny.yaml"))
    assert table_rate(method, parameters, lora) == rate


def test_the_table_shrinks_with_size_and_keeps_lora_above_full_and_preference_below_sft():
    for (_, _, smaller), (_, _, larger) in zip(TABLE[1:], TABLE[2:]):
        for family in smaller:
            assert larger[family][0] <= smaller[family][0] and larger[family][1] <= smaller[family][1]
    for _, _, rates in TABLE[1:]:
        for full, lora in rates.values():
            assert lora >= 5 * full
        assert rates["preference"][0] <= rates["supervised"][0] / 10


def test_every_registered_method_has_a_family():
    assert set(METHODS) <= set(FAMILY_OF)


def test_an_unknown_size_gets_the_smallest_rates():
    assert model_parameters({"name": "mine", "path": "/models/mine"}) is None
    assert table_rate("dpo", None, lora=False) == min(rates["preference"][0] for _, _, rates in TABLE)


def test_tiny_size_is_estimated_with_the_byte_level_vocabulary():
    from posttrain.models.tiny import byte_level_tokenizer

    assert len(byte_level_tokenizer(64)) == BYTE_VOCAB
    tiny = OmegaConf.load(CONF / "model" / "tiny.yaml")
    assert "published_parameters" not in tiny
    assert 1.0e6 < model_parameters(tiny) < 1.2e6  # the 1.08M the training log reports


@pytest.mark.parametrize("name", [m for m in MODELS if m != "tiny"])
def test_the_size_estimate_matches_the_published_count(name):
    model = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    assert estimated_parameters(model.architecture) == pytest.approx(model.published_parameters, rel=0.01)


def test_dpo_on_the_half_billion_model_gets_the_full_fine_tuning_preference_rate():
    cfg = composed("method=dpo", "model=qwen2.5-0.5b")
    assert cfg.learning_rate == 1e-6
    check_knobs(cfg)  # a plain number for the range check
    assert "full fine-tuning" in describe(cfg) and "preference" in describe(cfg)


def test_dpo_with_lora_rank_32_on_qwen3_4b_gets_the_dpo_guides_rate():
    assert composed("method=dpo", "model=qwen3-4b", "lora_rank=32").learning_rate == 1e-5
    # peft=none trains every weight whatever lora_rank says: the full fine-tuning rate
    assert composed("method=dpo", "model=qwen3-4b", "lora_rank=32", "peft=none").learning_rate == 5e-7


def test_a_number_given_wins():
    cfg = composed("method=dpo", "model=qwen3-4b", "learning_rate=3e-4")
    assert cfg.learning_rate == 3e-4
    assert describe(cfg) == "learning_rate=0.0003 (given in the config or on the command line)"
    assert OmegaConf.to_container(cfg, resolve=True)["learning_rate"] == 3e-4  # what config.yaml records


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_on_the_tiny_model_keeps_todays_rate(method):
    assert composed(f"method={method}").learning_rate == 5e-4


@pytest.mark.parametrize("model", MODELS)
def test_every_model_resolves_a_finite_positive_rate_for_every_method(model):
    cfg = composed(f"model={model}")
    for method in METHOD_NAMES:
        for lora_rank in (0, 16):
            OmegaConf.update(cfg, "method.name", method)
            OmegaConf.update(cfg, "lora_rank", lora_rank)
            rate = cfg.learning_rate
            assert isinstance(rate, float) and math.isfinite(rate) and 0 < rate <= 5e-4, (model, method, rate)
