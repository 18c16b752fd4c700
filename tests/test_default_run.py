"""The offline default really learns: `python -m posttrain` with no arguments trains the tiny model on
tic-tac-toe (SFT then DPO), and chaining DPO onto an SFT run raises the optimal-move rate."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import only_run_dir, read_jsonl, read_results, run_posttrain
from transformers import AutoModelForCausalLM, AutoTokenizer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("default_run")]  # one worker makes the run once


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("default")
    result = run_posttrain([], root, fresh=True)  # the README's main job, exactly as a user starts it
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(root)


def test_default_run_plays_near_perfect_tictactoe(default_run):
    results = read_results(default_run)
    sft = results["stages"]["sft"]
    assert sft["legal_move_rate"] >= 0.97
    assert sft["optimal_move_rate"] >= 0.8  # measured 0.851; a margin for other CPUs
    assert results["legal_move_rate"] >= 0.97
    assert results["optimal_move_rate"] >= 0.85
    assert results["vs_random_win_rate"] >= 0.7
    assert results["vs_perfect_loss_rate"] <= 0.3
    for key in ("vs_random_draw_rate", "vs_random_loss_rate", "vs_perfect_win_rate", "vs_perfect_draw_rate"):
        assert 0.0 <= results[key] <= 1.0


def test_dpo_stage_raises_the_optimal_move_rate_of_its_sft_start(default_run):
    stages = read_results(default_run)["stages"]
    assert stages["dpo"]["optimal_move_rate"] > stages["sft"]["optimal_move_rate"]


def test_the_run_ends_with_a_table_of_its_stages(default_run):
    log = (default_run / "train.log").read_text()
    assert f"run complete: {default_run}" in log and f"model: {default_run / 'final'}" in log
    header = next(line for line in log.splitlines() if "stage  optimal_move_rate" in line)
    assert "legal_move_rate" in header and "tokens/s" in header
    dpo = next(line for line in log.splitlines() if "] - dpo  " in line)
    assert "(+" in dpo or "(-" in dpo  # its change from the SFT stage


def test_run_directory_describes_the_run(default_run):
    assert default_run.name.startswith("tictactoe_tiny_sft-dpo_")
    assert (default_run / ".hydra" / "overrides.yaml").exists()
    assert json.loads((default_run / "status.json").read_text())["state"] == "completed"
    for stage in ("1-sft", "2-dpo"):
        assert (default_run / stage / "config.yaml").exists()

    metrics = read_jsonl(default_run / "metrics.jsonl")
    train_lines = [m for m in metrics if "loss" in m]
    for key in ("step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second"):
        assert all(key in m for m in train_lines), key
    dpo_lines = [m for m in train_lines if m["stage"] == "dpo"]
    for key in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"):
        assert all(key in m for m in dpo_lines), key
    sft_losses = [m["loss"] for m in train_lines if m["stage"] == "sft"]
    assert sft_losses[-1] < sft_losses[0] / 10

    checkpoints = read_jsonl(default_run / "checkpoints.jsonl")
    assert checkpoints[-1]["name"] == "final"
    assert {"name", "step", "epoch", "path"} <= set(checkpoints[-1])

    # disk hygiene: a completed run keeps final/ and drops its resumable checkpoints (training.keep_checkpoints)
    size = sum(p.stat().st_size for p in default_run.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < 50 * 2**20, size
    for stage in ("1-sft", "2-dpo"):
        assert not (default_run / stage / "checkpoints").exists()
        assert 0 < read_results(default_run / stage)["disk_mib"] < 50

    model = AutoModelForCausalLM.from_pretrained(default_run / "final")
    tokenizer = AutoTokenizer.from_pretrained(default_run / "final")
    assert model.config.vocab_size >= len(tokenizer)
    assert not (default_run / "final" / "training_args.bin").exists()


def test_chaining_dpo_onto_an_sft_run_directory(default_run, tmp_path):
    """`experiment=tictactoe method=dpo model.path=<run>/1-sft` starts from that run's model with the named
    preset's DPO stage settings (a few steps suffice to show it: the DPO stage's gain is asserted above)."""
    sft_dir = default_run / "1-sft"
    result = run_posttrain(["experiment=tictactoe", "method=dpo", f"model.path={sft_dir}", "run_name=chained", "max_steps=8",
                            "eval.games=10"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    chained_dir = tmp_path / "outputs" / "chained"
    config = yaml.safe_load((chained_dir / "config.yaml").read_text())
    assert config["method"]["name"] == "dpo" and config["method"]["args"]["loss_type"] == "sppo_hard"
    assert config["learning_rate"] == 5e-4 and config["model"]["path"] == str(sft_dir)
    # it started from the SFT model: a random-init model names almost no optimal move, while 8 DPO steps
    # from the SFT model (0.851) measured 0.775
    assert read_results(chained_dir)["optimal_move_rate"] >= 0.5


def test_sample_prints_a_move_from_the_finished_run(default_run, tmp_path):
    prompt = "X to play\\nX|2|3\\n4|O|6\\n7|8|9\\n"
    result = run_posttrain([f"run={default_run}", f"prompt={prompt}", "temperature=0", "max_new_tokens=80"],
                           tmp_path, module="posttrain.sample")
    assert result.returncode == 0, result.stderr
    assert "Move: " in result.stdout


def test_sample_completes_a_prompts_file_into_jsonl(default_run, tmp_path):
    boards = ["X to play\\nX|2|3\\n4|O|6\\n7|8|9\\n", "X to play\\n1|2|3\\n4|X|6\\n7|8|O\\n"]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": b.replace("\\n", "\n")}) + "\n" for b in boards))
    out = tmp_path / "completions.jsonl"
    result = run_posttrain([f"run={default_run}", "prompts=prompts.jsonl", f"out={out}", "num_samples=2",
                            "max_new_tokens=80"], tmp_path, module="posttrain.sample")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_jsonl(out)
    assert len(rows) == 4 and [r["sample"] for r in rows] == [0, 1, 0, 1]
    assert all(r["prompt"].startswith("X to play\n") and "Move: " in r["completion"] for r in rows)
