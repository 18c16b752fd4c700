"""models/gguf_cache.py: a GGUF model is unpacked once and read from the cache after that; a changed file
makes a new entry; a cache that cannot be written only costs the speed-up."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from posttrain.models import gguf_cache


@pytest.fixture
def gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "m.gguf").write_bytes(b"GGUF stand-in")
    return folder


def tiny_model(seed: int):
    torch.manual_seed(seed)
    config = AutoConfig.for_model("llama", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, vocab_size=40)
    return AutoModelForCausalLM.from_config(config)


def load(folder, seed, calls):
    def from_gguf():
        calls.append(seed)
        return tiny_model(seed)
    return gguf_cache.cached(str(folder), "m.gguf", "model-float32", from_gguf, AutoModelForCausalLM.from_pretrained)


def test_the_second_load_reads_the_cache(gguf):
    calls = []
    first = load(gguf, 0, calls)
    second = load(gguf, 1, calls)  # a second unpacking would give other weights
    assert calls == [0]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    entries = list((gguf_cache.cache_root() / "gguf").iterdir())
    assert [e.name.startswith("m-model-float32-") for e in entries] == [True]  # no staging folder left


def test_a_changed_file_is_unpacked_again(gguf):
    calls = []
    load(gguf, 0, calls)
    (gguf / "m.gguf").write_bytes(b"GGUF stand-in, newer")
    load(gguf, 1, calls)
    assert calls == [0, 1]


def test_an_unwritable_cache_still_loads(gguf, monkeypatch, caplog):
    blocker = gguf.parent / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("POSTTRAIN_CACHE", str(blocker))
    calls = []
    with caplog.at_level(logging.WARNING, logger="posttrain.models.gguf_cache"):
        model = load(gguf, 0, calls)
    assert calls == [0] and model.num_parameters() > 0
    assert "could not cache the dequantized GGUF model" in caplog.text


def test_a_missing_file_goes_to_the_loader_that_names_it(gguf):
    os.remove(gguf / "m.gguf")
    with pytest.raises(FileNotFoundError, match="m.gguf"):
        gguf_cache.cached(str(gguf), "m.gguf", "tokenizer", lambda: open(gguf / "m.gguf"), lambda saved: None)
    assert not (gguf_cache.cache_root() / "gguf").exists()
