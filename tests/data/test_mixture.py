"""Mixtures: ratios normalised and checked, sampling seeded, the prepared mixture cached under a key of the
sources' content, so a changed source is never served from a stale cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from posttrain.data.loading import load_data
from posttrain.errors import PosttrainError
from posttrain.registry import get_method

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "dataset" / "mixture_example.yaml"


def source_file(path: Path, tag: str, n: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"{tag} {i}", "completion": tag}) + "\n" for i in range(n)))
    return path


def mixture(tmp_path: Path, sources: list[dict], **fields):
    cfg = OmegaConf.merge(OmegaConf.load(EXAMPLE), {"eval_fraction": 0.0, "cache_dir": str(tmp_path / "cache"),
                                                     "mixture": {"sources": sources, "size": 40}, **fields})
    return load_data(cfg, get_method("sft"), seed=3, tokenizer_id="tiny")


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("mixture-*.jsonl"))


def test_ratios_are_normalised_and_sampling_is_seeded(tmp_path):
    a, b = source_file(tmp_path / "a.jsonl", "A", 100), source_file(tmp_path / "b.jsonl", "B", 100)
    data = mixture(tmp_path, [{"path": str(a), "ratio": 3}, {"path": str(b), "ratio": 1}], use_prepared=False)
    completions = data.train["completion"]
    assert completions.count("A") == 30 and completions.count("B") == 10
    again = mixture(tmp_path, [{"path": str(a), "ratio": 0.75}, {"path": str(b), "ratio": 0.25}], use_prepared=False)
    assert again.train["prompt"] == data.train["prompt"]


def test_changing_a_source_invalidates_the_cache(tmp_path):
    a, b = source_file(tmp_path / "a.jsonl", "A", 50), source_file(tmp_path / "b.jsonl", "B", 50)
    sources = [{"path": str(a), "ratio": 1}, {"path": str(b), "ratio": 1}]
    first = mixture(tmp_path, sources)
    assert len(cache_files(tmp_path)) == 1
    source_file(b, "C", 50)  # same file name, new content
    second = mixture(tmp_path, sources)
    assert len(cache_files(tmp_path)) == 2, "a changed source must get a new cache key"
    assert "C" in second.train["completion"] and "C" not in first.train["completion"]


def test_use_prepared_reuses_a_valid_cache_and_rebuilds_a_corrupt_one(tmp_path):
    a = source_file(tmp_path / "a.jsonl", "A", 50)
    sources = [{"path": str(a), "ratio": 1}]
    first = mixture(tmp_path, sources)
    (cached,) = cache_files(tmp_path)
    # A cache whose rows were tampered with fails its hash check and is rebuilt, not served.
    cached.write_text(cached.read_text().replace('"A"', '"Z"'))
    rebuilt = mixture(tmp_path, sources)
    assert rebuilt.train["completion"] == first.train["completion"]
    assert '"Z"' not in cached.read_text()


def test_named_dataset_sources_and_ratio_errors(tmp_path):
    data = mixture(tmp_path, [{"dataset": "tictactoe", "ratio": 1, "thoughts": False},
                              {"dataset": "tictactoe", "ratio": 1}])
    with_thought = [c for c in data.train["completion"] if c.startswith("Lines")]
    assert len(with_thought) == 20
    for bad in (0, -1, "x"):
        with pytest.raises(PosttrainError, match="ratios must be positive"):
            mixture(tmp_path, [{"dataset": "tictactoe", "ratio": bad}])
