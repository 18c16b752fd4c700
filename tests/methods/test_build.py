"""The generic trainer builder hands the resolved hardware to the TRL trainer it builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset
from hydra import compose, initialize_config_dir
from transformers import LlamaConfig, LlamaForCausalLM

from posttrain.data.loading import PreparedData
from posttrain.hardware import GENERATION_PAD, resolve_hardware
from posttrain.methods.build import build_trainer
from posttrain.methods.common import Knobs, TrainerInputs
from posttrain.models.tiny import byte_level_tokenizer
from posttrain.registry import get_method
from posttrain.rundir import RunDir

CONF = str(Path(__file__).resolve().parents[2] / "conf")


def online_trainer(tmp_path, method: str, *overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = compose("train", overrides=[f"method={method}", "hardware=cpu", *overrides])
    hardware = resolve_hardware(cfg.hardware, method=method, model_cfg=cfg.model, batch_size=8, accumulation=1)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    inputs = TrainerInputs(
        method=get_method(method), method_cfg=cfg.method, training=cfg.training, model=model,
        knobs=Knobs(learning_rate=1e-4, batch_size=8, num_epochs=1, max_steps=1, seed=0, max_length=64, run_name="r"),
        tokenizer=byte_level_tokenizer(256), peft_config=None, callbacks=[], run_dir=RunDir(tmp_path / "run"),
        data=PreparedData(train=Dataset.from_list([{"prompt": f"{i} + 1 ="} for i in range(8)]), eval=None),
        hardware=hardware, report_to=[])
    return build_trainer(get_method(method), inputs)


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_compiled_generation_reaches_trls_generate(tmp_path, method):
    """hardware.compile_generation (auto on a GPU): TRL's generate decodes with a static cache and compiles the
    step (TRL's own generation config turns compilation off), with prompts padded to a few shapes."""
    trainer = online_trainer(tmp_path, method, "hardware.compile_generation=true")
    config = trainer.generation_config
    assert config.cache_implementation == "static" and not config.disable_compile
    assert trainer.pad_to_multiple_of is None  # TRL's own padding would pad the training batch too
    # its decode steps attend on the cache's key/value heads without repeating them (models/decode_attention.py)
    assert trainer.model.config._attn_implementation == "sdpa_grouped_decode"

    plain = online_trainer(tmp_path / "plain", method)  # the CPU default: TRL's own generation
    assert plain.generation_config.cache_implementation is None and plain.generation_config.disable_compile
    assert plain.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_compiled_generation_pads_the_prompts_generate_sees_and_trains_on_unpadded_sequences(tmp_path, method):
    """The static cache compiles one decoding graph per prompt length, so generate gets prompts padded to a
    multiple of GENERATION_PAD; the batch that GRPO and RLOO score and train on is as wide as its longest
    prompt and completion (TRL's pad_to_multiple_of would make it 64 + 64 columns here)."""
    trainer = online_trainer(tmp_path, method, "hardware.compile_generation=true",
                             "method.args.max_completion_length=8", "method.rewards=[{name: format, pattern: x}]")
    trainer.generation_config.disable_compile = True  # the static cache without compiling on a CPU
    widths = []
    trainer.model.register_forward_pre_hook(lambda _, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                            with_kwargs=True)
    rows = [trainer.train_dataset[i] for i in range(8)]
    batch = trainer._generate_and_score_completions(rows)
    longest_prompt = max(len(trainer.processing_class(row["prompt"])["input_ids"]) for row in rows)
    assert widths[0] == GENERATION_PAD  # the prefill
    assert batch["prompt_ids"].shape[1] == longest_prompt < GENERATION_PAD
    assert batch["completion_ids"].shape[1] <= 8
