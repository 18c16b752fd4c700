"""Plain-text corpora (.txt, .txt.gz): one document per line, or per blank-line separated paragraph, read as
text rows for method=pretrain (and any method that takes text); a bad corpus stops with one line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from conftest import only_run_dir, read_jsonl, run_posttrain
from omegaconf import OmegaConf

from posttrain.data.loading import load_data
from posttrain.errors import PosttrainError
from posttrain.registry import get_method

LOCAL = Path(__file__).resolve().parents[2] / "conf" / "dataset" / "local.yaml"
CORPUS = "The cat sat on the mat.\nIt purred.\n\nThe dog barked.\n\n\nRain fell all night.\nMorning came.\n"


def prepare(path: Path, method: str = "pretrain", **fields):
    cfg = OmegaConf.merge(OmegaConf.load(LOCAL), {"path": str(path), "eval_fraction": 0.0, **fields})
    return load_data(cfg, get_method(method), seed=0)


def test_a_txt_corpus_is_one_document_per_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    data = prepare(corpus)
    assert data.source_format == "text"
    assert data.train["text"] == ["The cat sat on the mat.", "It purred.", "The dog barked.", "Rain fell all night.",
                                  "Morning came."]


def test_paragraph_split_and_gzip(tmp_path):
    corpus = tmp_path / "corpus.txt.gz"
    corpus.write_bytes(gzip.compress(CORPUS.encode()))
    data = prepare(corpus, text_split="paragraph")
    assert data.train["text"] == ["The cat sat on the mat.\nIt purred.", "The dog barked.",
                                  "Rain fell all night.\nMorning came."]


def test_a_text_corpus_trains_sft_as_text_rows(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    assert prepare(corpus, method="sft").train["text"][0] == "The cat sat on the mat."


@pytest.mark.parametrize("content, expected", [
    (b"\n \n", "has no data rows"),
    (b"caf\xe9 au lait\n", "is not UTF-8 text (bad byte at line 1)"),
])
def test_a_bad_corpus_stops_with_one_line(tmp_path, content, expected):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    with pytest.raises(PosttrainError) as caught:
        prepare(corpus)
    assert expected in caught.value.line() and "\n" not in caught.value.line()


@pytest.mark.slow  # an end-to-end training run
def test_pretrain_on_a_txt_corpus_runs(workdir):
    (workdir / "corpus.txt").write_text("".join(f"Document {i}: the number after {i} is {i + 1}.\n" for i in range(64)))
    command = ["method=pretrain", "dataset=local", "dataset.path=corpus.txt", "max_steps=2", "batch_size=8",
               "eval=none", "training.save_steps=0", "training.logging_steps=1"]
    result = run_posttrain(command, workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = only_run_dir(workdir)
    assert any("loss" in line for line in read_jsonl(run_dir / "metrics.jsonl"))
