"""Every data format is recognised and converted to the form each method trains on; bad files and rows
stop with one line naming the file, the row and the fix (or are skipped and counted on request)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from posttrain.data.loading import load_data
from posttrain.errors import PosttrainError
from posttrain.registry import get_method

LOCAL = Path(__file__).resolve().parents[2] / "conf" / "dataset" / "local.yaml"


def write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    return path


def prepare(path: Path, method: str = "sft", **fields):
    cfg = OmegaConf.merge(OmegaConf.load(LOCAL), {"path": str(path), "eval_fraction": 0.0, **fields})
    return load_data(cfg, get_method(method), seed=0)


def error_line(path: Path, method: str = "sft", **fields) -> str:
    with pytest.raises(PosttrainError) as caught:
        prepare(path, method, **fields)
    line = caught.value.line()
    assert "\n" not in line
    return line


HH_CHOSEN = "\n\nHuman: What is 2+2?\n\nAssistant: 4."
HH_REJECTED = "\n\nHuman: What is 2+2?\n\nAssistant: 5."
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}]

# format name -> (a row of that format, method, the first converted row)
FORMATS = {
    "prompt_completion": ({"prompt": "2+2=", "completion": "4"}, "sft", {"prompt": "2+2=", "completion": "4"}),
    "messages": ({"messages": CHAT}, "sft", {"messages": CHAT}),
    "sharegpt": ({"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                                    {"from": "gpt", "value": "Hello."}]}, "sft", {"messages": CHAT}),
    "conversations": ({"conversations": CHAT}, "sft", {"messages": CHAT}),
    "alpaca": ({"instruction": "Add.", "input": "2 and 2", "output": "4"}, "sft",
               {"prompt": "Add.\n\n2 and 2", "completion": "4"}),
    "preference": ({"prompt": "2+2=", "chosen": "4", "rejected": "5"}, "dpo",
                   {"prompt": "2+2=", "chosen": "4", "rejected": "5"}),
    "implicit_preference": ({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, "dpo",
                            {"prompt": "\n\nHuman: What is 2+2?\n\nAssistant:", "chosen": " 4.", "rejected": " 5."}),
    "text": ({"text": "Once upon a time."}, "sft", {"text": "Once upon a time."}),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_is_detected_and_converted(tmp_path, name):
    row, method, expected = FORMATS[name]
    data = prepare(write(tmp_path / "data.jsonl", [row, row]), method)
    assert data.source_format == name
    assert data.train[0] == expected
    assert len(data.train) == 2


def test_preference_pairs_as_message_lists(tmp_path):
    row = {"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
           "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]}
    data = prepare(write(tmp_path / "pairs.jsonl", [row]), "dpo")
    assert data.source_format == "implicit_preference"
    assert data.train[0]["prompt"] == [{"role": "user", "content": "Hi"}]
    assert data.train[0]["chosen"] == [{"role": "assistant", "content": "Hello."}]
    assert data.conversational


def test_unpaired_labels_and_pairs_split_for_kto(tmp_path):
    rows = [{"prompt": "a", "completion": "b", "label": "true"}, {"prompt": "a", "completion": "c", "label": 0}]
    data = prepare(write(tmp_path / "kto.jsonl", rows), "kto")
    assert [r["label"] for r in data.train] == [True, False]
    from posttrain.data.files import read_rows
    from posttrain.data.formats import convert_rows

    pairs = read_rows(str(write(tmp_path / "p.jsonl", [{"prompt": "q", "chosen": "y", "rejected": "n"}])))
    out, fmt = convert_rows(pairs, "unpaired", tmp_path / "p.jsonl", {}, False, [])
    assert fmt == "preference"
    assert out == [{"prompt": "q", "completion": "y", "label": True}, {"prompt": "q", "completion": "n", "label": False}]


def test_prompt_only_rows_keep_extra_columns_for_rewards(tmp_path):
    from posttrain.data.files import read_rows
    from posttrain.data.formats import convert_rows

    path = write(tmp_path / "rl.jsonl", [{"prompt": "2+2=", "answer": "4"}])
    out, fmt = convert_rows(read_rows(str(path)), "prompt", path, {}, False, [])
    assert fmt == "prompt_only" and out == [{"answer": "4", "prompt": "2+2="}]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_every_file_type_reads(tmp_path, suffix):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5)]
    data = prepare(write(tmp_path / f"data{suffix}", rows))
    assert [r["completion"] for r in data.train] == [f"a{i}" for i in range(5)]


def test_json_lines_inside_a_json_file(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n')
    assert len(prepare(path).train) == 2


def test_columns_map_other_names(tmp_path):
    path = write(tmp_path / "qa.jsonl", [{"question": "2+2=", "answer": "4"}])
    data = prepare(path, columns={"prompt": "question", "completion": "answer"})
    assert data.train[0] == {"prompt": "2+2=", "completion": "4"}


def test_template_renders_nli_rows(tmp_path):
    path = write(tmp_path / "nli.jsonl", [{"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0}])
    template = OmegaConf.load(LOCAL.parent / "nli.yaml").template
    data = prepare(path, template=template)
    assert data.train[0]["prompt"].startswith("Premise: A dog runs.\nHypothesis: An animal moves.")
    assert data.train[0]["completion"] == " entailment"


def test_held_out_fraction_is_seeded_and_eval_file_is_used(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(100)])
    first = prepare(path, eval_fraction=0.1)
    again = prepare(path, eval_fraction=0.1)
    assert len(first.eval) == 10 and first.eval["prompt"] == again.eval["prompt"]
    assert not set(first.eval["prompt"]) & set(first.train["prompt"])
    dev = write(tmp_path / "dev.jsonl", [{"prompt": "x", "completion": "y"}])
    separate = prepare(path, eval_path=str(dev))
    assert len(separate.train) == 100 and separate.eval["prompt"] == ["x"]


BAD_FILES = [
    # (file name, content, method, expected fragment of the one-line error)
    ("empty.jsonl", "", "sft", "empty.jsonl has no data rows"),
    ("broken.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n', "sft",
     "broken.jsonl line 2 is not valid JSON"),
    ("latin1.jsonl", b'{"prompt": "caf\xe9", "completion": "b"}\n', "sft", "is not UTF-8 text (bad byte at line 1)"),
    ("data.xml", "<a>hello</a>", "sft", "has an unknown extension '.xml'"),
    ("nulls.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": null, "completion": "b"}\n', "sft",
     "nulls.jsonl line 2: field 'prompt' is null"),
    ("blank.jsonl", '{"prompt": "a", "completion": "   "}\n', "sft", "blank.jsonl line 1: field 'completion' is empty"),
    ("types.jsonl", '{"prompt": "a", "completion": 7}\n', "sft", "field 'completion' is a int, not text"),
    ("sft.jsonl", '{"prompt": "a", "completion": "b"}\n', "dpo",
     "holds prompt_completion data (its columns: completion, prompt), which cannot train a method that needs "
     "preference rows (prompt, chosen, rejected)"),
    ("other.jsonl", '{"question": "a", "answer": "b"}\n', "sft", "matches no known data format (its columns: answer, question)"),
    ("array.json", '[{"prompt": "a", "completion": "b"}, 3]', "sft", "array.json row 2 is a JSON int, not an object"),
    ("roles.jsonl", '{"messages": [{"role": "wizard", "content": "hi"}]}\n', "sft", "has unknown role 'wizard'"),
]


@pytest.mark.parametrize("name,content,method,expected", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_fails_with_one_line(tmp_path, name, content, method, expected):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = error_line(path, method)
    assert expected in line, line
    assert "Fix:" in line


def test_missing_file_names_the_path(tmp_path):
    assert f"dataset file {tmp_path / 'nope.jsonl'} does not exist" in error_line(tmp_path / "nope.jsonl")


def test_skip_bad_rows_skips_and_counts(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"\n{"prompt": "", "completion": "b"}\n'
                    '{"prompt": "c", "completion": "d"}\n')
    data = prepare(path, skip_bad_rows=True)
    assert len(data.train) == 2
    assert len(data.skipped) == 2 and "line 2" in data.skipped[0] and "line 3" in data.skipped[1]
    assert "2 bad rows skipped" in data.describe()


def test_a_directory_is_not_a_data_file(tmp_path):
    (tmp_path / "shards").mkdir()
    assert "is a directory, not a data file" in error_line(tmp_path / "shards")
