"""The DPO guide's named datasets train straight from their parquet file under data/."""

from __future__ import annotations

import pandas as pd
from conftest import read_jsonl, read_results, run_posttrain


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
