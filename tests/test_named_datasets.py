"""The DPO guide's named datasets train straight from their parquet file under data/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import read_jsonl, read_results, run_posttrain


@pytest.mark.slow  # an end-to-end training run
def test_dpo_on_embedding_diversity_parquet(workdir):
    (workdir / "data").mkdir()
    rows = [
        {"prompt": f"Write a line about the number {i}.", "chosen": f"{i} glows like a lantern in fog.",
         "rejected": f"{i} is a number.", "embedding_score": 0.5}
        for i in range(40)
    ]
    pd.DataFrame(rows).to_parquet(workdir / "data" / "embedding_diversity.parquet")
    result = run_posttrain(["method=dpo", "dataset=embedding_diversity", "max_steps=6", "batch_size=8",
                            "training.logging_steps=2", "training.save_steps=0", "run_name=guide"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    run = workdir / "outputs" / "guide"
    assert "preference data, 38 train / 2 eval rows" in (run / "train.log").read_text()
    lines = [m for m in read_jsonl(run / "metrics.jsonl") if "loss" in m]
    assert [m["step"] for m in lines] == [2, 4, 6]
    assert "eval/rewards/accuracies" in read_results(run)


@pytest.mark.slow  # an end-to-end training run
def test_a_named_dataset_given_only_a_path_holds_out_its_eval_fraction(workdir):
    """dataset=nli dataset.path=FILE trains on FILE and holds out eval_fraction of it, not the guide's dev file."""
    example = Path(__file__).resolve().parents[1] / "src" / "posttrain" / "data" / "examples" / "nli_train.jsonl"
    (workdir / "my_nli.jsonl").write_text(example.read_text())
    rows = len(example.read_text().splitlines())
    result = run_posttrain(["method=sft", "dataset=nli", "dataset.path=my_nli.jsonl", "max_steps=2", "batch_size=8",
                            "eval=none", "training.save_steps=0", "model.max_length=256", "run_name=nli"],
                           workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    held_out = round(rows * 0.05 + 0.4999)  # datasets' train_test_split rounds the test share up
    log = (workdir / "outputs" / "nli" / "train.log").read_text()
    assert f"templated data, {rows - held_out} train / {held_out} eval rows" in log


def test_an_explicit_eval_path_still_wins(workdir):
    printed = run_posttrain(["method=sft", "dataset=nli", "dataset.path=a.jsonl", "dataset.eval_path=b.jsonl",
                             "--cfg", "job"], workdir)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert "eval_path: b.jsonl" in printed.stdout
