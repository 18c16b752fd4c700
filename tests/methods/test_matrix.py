"""The method x input matrix, training side: every registered method, with full fine-tuning and with LoRA,
trains two steps of the tiny model on a small file in a format it accepts, with no traceback. (Every format
against every method, without a model, is tests/data/test_input_matrix.py.)"""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl, run_posttrain

from posttrain.registry import METHODS

# a file in a format each row form accepts
ROWS = {
    "completion": lambda i: {"prompt": f"{i} + 1 =", "completion": f" {i + 1}"},
    "text": lambda i: {"text": f"{i} + 1 = {i + 1}"},
    "preference": lambda i: {"prompt": f"{i} + 1 =", "chosen": f" {i + 1}", "rejected": f" {i + 2}"},
    "unpaired": lambda i: {"prompt": f"{i} + 1 =", "completion": f" {i + 1 + i % 2}", "label": i % 2 == 0},
    "prompt": lambda i: {"prompt": f"{i} + 1 =", "answer": str(i + 1)},
}
SHORT = ["max_steps=2", "batch_size=8", "eval=none", "training.save_steps=0", "training.logging_steps=1",
         "logger=none", "model.max_length=64"]
REWARDS = "method.rewards=[{name: format, pattern: '[0-9]'}]"  # reads no column: any prompt file fits


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A finished tiny SFT run: the teacher for distill."""
    root = tmp_path_factory.mktemp("teacher")
    (root / "rows.jsonl").write_text("".join(json.dumps(ROWS["completion"](i)) + "\n" for i in range(32)))
    result = run_posttrain(["method=sft", "dataset=local", "dataset.path=rows.jsonl", *SHORT, "run_name=t"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "outputs" / "t"


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_two_steps(workdir, method, lora, teacher):
    row = METHODS[method]
    (workdir / "data.jsonl").write_text("".join(json.dumps(ROWS[row.form](i)) + "\n" for i in range(32)))
    extra = [*([REWARDS] if row.rewards else []), *([f"method.teacher={teacher}"] if row.teacher else [])]
    if row.samples_while_training:  # short samples keep the online methods fast
        extra.append("method.args.max_new_tokens=8" if method == "online_dpo" else "method.args.max_completion_length=8")
    result = run_posttrain([f"method={method}", "dataset=local", "dataset.path=data.jsonl", *SHORT, *extra,
                            f"lora_rank={8 if lora else 0}", "peft=lora", "run_name=m"], workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert [m["step"] for m in read_jsonl(workdir / "outputs" / "m" / "metrics.jsonl") if "loss" in m] == [1, 2]
