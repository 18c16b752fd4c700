"""W&B never costs a run: WANDB_MODE is honoured as the user exported it, and an API key with no route to
the server falls back to offline logging in the run directory with one warning line, never a traceback."""

from __future__ import annotations

import json

import pytest
from conftest import read_results, run_posttrain

SHORT = ["max_steps=2", "batch_size=8", "eval=none", "training.save_steps=0", "wandb_project=p"]
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def write_rows(workdir) -> None:
    (workdir / "rows.jsonl").write_text(
        "".join(json.dumps({"prompt": f"{i} + 1 =", "completion": f" {i + 1}"}) + "\n" for i in range(32)))


@pytest.mark.slow  # an end-to-end training run
@pytest.mark.parametrize("mode", ["", "offline"], ids=["no WANDB_MODE", "WANDB_MODE=offline"])
def test_a_key_without_a_server_logs_offline_and_completes(workdir, mode):
    write_rows(workdir)
    env = {"WANDB_API_KEY": FAKE_KEY, "WANDB_BASE_URL": UNREACHABLE, "WANDB_MODE": mode}
    result = run_posttrain(["method=sft", "dataset=local", "dataset.path=rows.jsonl", *SHORT, "run_name=w"], workdir,
                           env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Traceback" not in output and FAKE_KEY not in output
    run = workdir / "outputs" / "w"
    assert list((run / "wandb").glob("offline-run-*"))
    assert "eval/loss" in read_results(run)
    fallback = [line for line in output.splitlines() if "online logging failed" in line]
    if mode:  # the user's offline choice is simply followed
        assert not fallback and "offline mode" in output
    else:
        assert len(fallback) == 1 and "cannot reach 127.0.0.1:9" in fallback[0] and "wandb sync" in fallback[0]
