"""The method x input matrix, data side: every registered method on a file of every documented format (and
every file type, the plain-text corpus, the shipped examples) either converts to the method's rows or stops
with one PosttrainError line, never an exception of another kind. Runs in seconds (no model); the training
side of the matrix (each method, full fine-tuning and LoRA, two steps) is tests/methods/test_matrix.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from data.test_formats import FORMATS, write
from posttrain.data.formats import ACCEPTS
from posttrain.data.loading import check_dataset_rows, load_data
from posttrain.errors import PosttrainError
from posttrain.registry import METHODS

LOCAL = Path(__file__).resolve().parents[2] / "conf" / "dataset" / "local.yaml"
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "posttrain" / "data" / "examples"
KTO_ROW = {"prompt": "2+2=", "completion": "4", "label": True}
PROMPT_ROW = {"prompt": "2+2=", "answer": "4"}


def inputs(tmp_path: Path) -> dict[str, Path]:
    """name -> a small file of that input (4 rows of one format, the file types, a .txt corpus, the shipped NLI sample)."""
    files = {name: write(tmp_path / f"{name}.jsonl", [row] * 4) for name, (row, _, _) in FORMATS.items()}
    files["unpaired"] = write(tmp_path / "unpaired.jsonl", [KTO_ROW, {**KTO_ROW, "label": False}] * 2)
    files["prompt_only"] = write(tmp_path / "prompt_only.jsonl", [PROMPT_ROW] * 4)
    for suffix in (".json", ".parquet", ".csv"):
        files[f"preference{suffix}"] = write(tmp_path / f"preference{suffix}", [FORMATS["preference"][0]] * 4)
    (tmp_path / "corpus.txt").write_text("One document.\nAnother document.\n")
    files["corpus.txt"] = tmp_path / "corpus.txt"
    files["nli_train.jsonl"] = EXAMPLES / "nli_train.jsonl"
    return files


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_on_every_input_converts_or_stops_in_one_line(tmp_path, method):
    row = METHODS[method]
    outcomes = {}
    for name, path in inputs(tmp_path).items():
        cfg = OmegaConf.merge(OmegaConf.load(LOCAL), {"path": str(path), "eval_fraction": 0.0})
        try:
            data = load_data(cfg, row, seed=0)
            columns = check_dataset_rows(cfg, row)
        except PosttrainError as error:
            line = error.line()
            assert "\n" not in line and "Fix:" in line, (name, line)
            outcomes[name] = "one line"
            continue
        assert set(row.fields) <= set(data.train.column_names) or "messages" in data.train.column_names \
            or (row.form == "completion" and "text" in data.train.column_names), (name, data.train.column_names)
        assert columns == set(data.train.column_names)
        outcomes[name] = "converts"
    accepted = {name for name in FORMATS if name in ACCEPTS[row.form]}
    assert {name for name in accepted if outcomes.get(name) != "converts"} == set(), outcomes
