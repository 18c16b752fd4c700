"""The metrics log's speed figure: tokens/s from the tokens the trainer counted, and none (rather than a
false 0) for trainers that count no tokens."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from posttrain.run.callbacks import MetricsLog


class FakeRunDir:
    def __init__(self):
        self.records = []

    def log_metrics(self, record):
        self.records.append(record)


def logged(tokens_after: int) -> dict:
    run_dir = FakeRunDir()
    callback = MetricsLog(run_dir)
    state = SimpleNamespace(num_input_tokens_seen=0, global_step=0, epoch=0.0, max_steps=10)
    callback.on_train_begin(None, state, None)
    time.sleep(0.01)
    state.num_input_tokens_seen, state.global_step, state.epoch = tokens_after, 5, 0.5
    callback.on_log(None, state, None, logs={"loss": 1.5, "learning_rate": 1e-3, "num_input_tokens_seen": tokens_after})
    return run_dir.records[-1]


def test_tokens_per_second_comes_from_counted_tokens():
    record = logged(1000)
    assert record["step"] == 5 and record["loss"] == 1.5
    assert 0 < record["tokens_per_second"] < 1000 / 0.01
    assert "num_input_tokens_seen" not in record


def test_no_speed_figure_when_the_trainer_counts_no_tokens():
    assert "tokens_per_second" not in logged(0)


def test_a_window_without_counted_tokens_keeps_running():
    """GRPO counts a generate call's tokens at the first of the steps that train on them: the next figure
    spans the steps in between instead of dropping their time."""
    run_dir = FakeRunDir()
    callback = MetricsLog(run_dir)
    state = SimpleNamespace(num_input_tokens_seen=0, global_step=0, epoch=0.0, max_steps=8)
    callback.on_train_begin(None, state, None)
    for step, tokens in [(1, 1000), (2, 1000), (3, 1000), (4, 1000), (5, 2000)]:
        time.sleep(0.02)
        state.num_input_tokens_seen, state.global_step = tokens, step
        callback.on_log(None, state, None, logs={"loss": 1.0})
    rates = {r["step"]: r.get("tokens_per_second") for r in run_dir.records}
    assert rates[2] is None and rates[3] is None and rates[4] is None
    # 1000 tokens over the four sleeps since step 1 (a dropped window would give 1000 over one sleep)
    assert rates[5] < 1000 / (3 * 0.02)
    assert callback.averages()["tokens_per_second"] < 2000 / (4 * 0.02)


@pytest.mark.slow  # an end-to-end training run
def test_a_run_shorter_than_logging_steps_still_logs_its_last_step(workdir):
    import json

    from conftest import read_jsonl, run_posttrain

    (workdir / "rows.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{i} + 1 =", "completion": f" {i + 1}"}) + "\n" for i in range(32)))
    result = run_posttrain(["method=sft", "dataset=local", "dataset.path=rows.jsonl", "max_steps=3", "batch_size=8",
                            "training.logging_steps=10", "eval=none", "training.save_steps=0", "logger=none",
                            "run_name=short"], workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [m for m in read_jsonl(workdir / "outputs" / "short" / "metrics.jsonl") if "loss" in m]
    assert [m["step"] for m in lines] == [3]
