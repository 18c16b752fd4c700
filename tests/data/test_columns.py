"""Your column names: `dataset.columns.<field>=<your column>` works on the command line (no `+`) for every
field a format reads, and a file whose columns fit no format the method takes says which fields each format
needs, which columns the file has, and the mapping that fixes it."""

from __future__ import annotations

import json

import pytest
from conftest import run_posttrain

SHORT = ["max_steps=2", "batch_size=8", "eval=none", "training.save_steps=0", "logger=none"]


def write_pairs(workdir, keys=("question", "good", "bad")) -> None:
    question, good, bad = keys
    (workdir / "pairs.jsonl").write_text("".join(
        json.dumps({question: f"{i} + 1 =", good: f" {i + 1}", bad: f" {i + 2}"}) + "\n" for i in range(32)))


@pytest.mark.slow  # an end-to-end training run
def test_columns_map_without_a_plus_on_the_command_line(workdir):
    write_pairs(workdir)
    result = run_posttrain(["method=dpo", "dataset=local", "dataset.path=pairs.jsonl", "dataset.columns.prompt=question",
                            "dataset.columns.chosen=good", "dataset.columns.rejected=bad", *SHORT, "run_name=mapped"],
                           workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "preference data" in (workdir / "outputs" / "mapped" / "train.log").read_text()


def test_a_dpo_file_with_other_columns_names_the_fields_and_the_mapping(workdir):
    write_pairs(workdir, keys=("text", "good", "bad"))
    result = run_posttrain(["method=dpo", "dataset=local", "dataset.path=pairs.jsonl", *SHORT], workdir)
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("posttrain: error: ") and "Fix:" in line, result.stderr[-3000:]
    assert "(its columns: bad, good, text)" in line
    assert "preference (prompt, chosen, rejected)" in line and "implicit_preference (chosen, rejected" in line
    assert "dataset.columns.prompt=<your column> dataset.columns.chosen=<your column>" in line
