"""posttrain.chat: a terminal conversation with a finished run's model, the history kept for a chat model,
each line on its own for a model that did not train on chat; /reset and /exit; --help."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_posttrain
from omegaconf import OmegaConf
from transformers import LlamaConfig, LlamaForCausalLM

import posttrain.chat as chat_module
from posttrain.models.loading import IDENTITY_FILE
from posttrain.models.tiny import byte_level_tokenizer


@pytest.fixture
def model_dir(tmp_path):
    """A saved tiny model with posttrain's byte-level tokenizer (which has a chat template)."""
    tokenizer = byte_level_tokenizer(128)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def converse(model_dir, lines, monkeypatch, **settings):
    prompts = []

    def fake_generate(model, tokenizer, text, cfg, samples=1):
        prompts.append(text)
        return [f" reply {len(prompts)}"]

    monkeypatch.setattr(chat_module, "generate", fake_generate)
    cfg = OmegaConf.create({"run": str(model_dir), "chat": "auto", "system": None, "max_new_tokens": 4,
                            "temperature": 0, "top_p": 1.0, "seed": 0, **settings})
    out = []
    replies = chat_module.chat(cfg, iter(lines), out.append)
    return replies, prompts, "".join(out)


def test_a_chat_model_keeps_the_history_until_reset(model_dir, monkeypatch):
    (model_dir / IDENTITY_FILE).write_text(json.dumps({"chat": True}))
    replies, prompts, out = converse(model_dir, ["hello\n", "and then?\n", "/reset\n", "anew\n", "/exit\n", "never\n"],
                                     monkeypatch, system="Be terse.")
    assert replies == 3 and "model> reply 1" in out and "(history cleared)" in out and "chat template" in out
    assert "Be terse." in prompts[0] and prompts[0].rstrip().endswith("<|im_start|>assistant")
    assert "hello" in prompts[1] and "reply 1" in prompts[1] and "and then?" in prompts[1]  # the history
    assert "hello" not in prompts[2] and "anew" in prompts[2] and "Be terse." in prompts[2]  # after /reset
    assert not any("never" in p for p in prompts)


def test_a_model_not_trained_on_chat_completes_each_line_on_its_own(model_dir, monkeypatch):
    (model_dir / IDENTITY_FILE).write_text(json.dumps({"chat": False}))  # a run that trained on plain text
    replies, prompts, out = converse(model_dir, ["X to play\\n1|2|3\n", "second\n", "\n", "after the end\n"],
                                     monkeypatch)
    assert replies == 2 and "not a chat model" in out
    assert prompts == ["X to play\n1|2|3", "second"]


@pytest.mark.slow  # an end-to-end training run
def test_piped_lines_get_real_replies_and_help_lists_the_fields(model_dir, workdir):
    result = run_posttrain([f"run={model_dir}", "max_new_tokens=3", "temperature=0"], workdir, module="posttrain.chat",
                           env={}, timeout=600, input_text="hello\nagain\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model> ") == 2
    help_text = run_posttrain(["--help"], workdir, module="posttrain.chat").stdout
    assert "python -m posttrain.chat" in help_text and "# system message" in help_text
