"""The diversity evaluator (eval=diversity), the DPO guide's "evaluate diversity on prompts of varying
creativity": k sampled completions of every prompt of a prompt file, each prompt scored by

- embedding_diversity: the mean pairwise cosine distance (1 - cos) of its k completions in the sentence-
  embedding space of all-MiniLM-L6-v2 (or eval.embedder): posttrain.pairs' criterion=embedding score of each
  completion (its mean distance to the others), averaged over the k;
- distinct_1, distinct_2: distinct n-grams / all n-grams of its k completions (lowercased whitespace words);
- mean_completion_tokens: completion length in the model's tokens;
- judge_quality (eval.judge): posttrain.pairs' judge's expected 1-9 rating of each completion, so that
  diversity bought with nonsense shows;

each averaged over the prompts, overall and per creativity bucket (`<metric>/creativity_<bucket>`).
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalOutput, EvalRequest
from posttrain.scoring.judge import eval_judge_config

# the figures of one prompt; with the prompt count and the judge's rating, results.json's keys in the order
# of the registry row (the headline first)
FIGURES = ("embedding_diversity", "distinct_1", "distinct_2", "mean_completion_tokens")
JUDGE = "judge_quality"
ORDER = (*FIGURES, "diversity_prompts", JUDGE)


@dataclass(frozen=True)
class DiversityPrompt:
    text: str
    # the file's creativity: a number, a label, or None when it gives none
    creativity: float | str | None
    # its bucket label (None: no creativity given)
    bucket: str | None


def shipped_prompts() -> Path:
    """The example prompt file shipped with posttrain (24 prompts with a creativity score each)."""
    return Path(str(files("posttrain.data") / "examples" / "diversity_prompts.jsonl"))


# --- the arithmetic ---------------------------------------------------------------------------------------

def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over `texts` (lowercased whitespace words; no n-gram spans two texts);
    0.0 when no text has n words."""
    grams = [tuple(words[i : i + n]) for words in (t.lower().split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def parse_buckets(spec) -> tuple[list[str], list[float]]:
    """eval.buckets, a number line `[label, threshold, label, ..., label]` with ascending thresholds, as
    (labels, thresholds)."""
    items = list(spec or [])
    labels, thresholds = items[0::2], items[1::2]
    fix = "set eval.buckets=[low,0.33,medium,0.66,high] (labels between ascending thresholds)"
    if not items or len(items) % 2 == 0:
        raise PosttrainError(f"eval.buckets={items} does not alternate label, threshold, ..., label", fix)
    if not all(isinstance(label, str) and bucket_key(label) for label in labels):
        raise PosttrainError(f"eval.buckets={items}: every other entry, from the first, must be a label", fix)
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in thresholds):
        raise PosttrainError(f"eval.buckets={items}: the entries between labels must be numbers", fix)
    if any(b <= a for a, b in zip(thresholds, thresholds[1:])):
        raise PosttrainError(f"eval.buckets={items}: the thresholds are not ascending", fix)
    return [str(label) for label in labels], [float(t) for t in thresholds]


def bucket_of(creativity: float | str | None, labels: list[str], thresholds: list[float]) -> str | None:
    """The bucket of a creativity: a number goes to the label before the first threshold it is below (the
    last label when none); a text label is its own bucket; None stays None."""
    if creativity is None:
        return None
    if isinstance(creativity, str):
        return bucket_key(creativity)
    for label, threshold in zip(labels, thresholds):
        if creativity < threshold:
            return bucket_key(label)
    return bucket_key(labels[-1])


def bucket_key(label: str) -> str:
    """A label as it appears in metric names: lowercase words joined by '_' ("Very high" -> very_high)."""
    return "_".join(re.findall(r"[a-z0-9]+", label.lower()))


def aggregate(records: list[dict], metrics: tuple[str, ...]) -> dict:
    """Each metric averaged over the prompt records (their "bucket" and figures), then per bucket in order of
    first appearance, with the prompt counts (diversity_prompts)."""

    def means(group: list[dict]) -> dict:
        values = {**{m: sum(r[m] for r in group) / len(group) for m in metrics}, "diversity_prompts": len(group)}
        return {key: values[key] for key in ORDER if key in values}

    results = means(records)
    buckets = list(dict.fromkeys(r["bucket"] for r in records if r["bucket"] is not None))
    for bucket in buckets:
        results.update({f"{m}/creativity_{bucket}": v for m, v in means([r for r in records if r["bucket"] == bucket]).items()})
    return results


def spread_subset(prompts: list[DiversityPrompt], limit: int | None, seed: int) -> list[DiversityPrompt]:
    """At most `limit` prompts: a seeded subset taking the buckets in turn (so a small one still spans them),
    in file order; all of them when limit is None or not smaller."""
    if limit is None or limit >= len(prompts):
        return prompts
    rng = random.Random(seed)
    queues: dict[str | None, list[int]] = {}
    for index, prompt in enumerate(prompts):
        queues.setdefault(prompt.bucket, []).append(index)
    for queue in queues.values():
        rng.shuffle(queue)
    chosen: list[int] = []
    while len(chosen) < limit:
        for queue in queues.values():
            if queue and len(chosen) < limit:
                chosen.append(queue.pop())
    return [prompts[i] for i in sorted(chosen)]


# --- the inputs -------------------------------------------------------------------------------------------

def read_diversity_prompts(path: Path, labels: list[str], thresholds: list[float]) -> list[DiversityPrompt]:
    """The prompts of a .jsonl file ("prompt" text, optional "creativity" number or label); one-line errors."""
    fix = 'write one JSON object per line: {"prompt": "...", "creativity": 0.9} (creativity optional: a number or a label)'
    if path.suffix != ".jsonl" or not path.is_file():
        problem = "is not a .jsonl file" if path.is_file() or path.is_dir() else "does not exist"
        raise PosttrainError(f"eval.prompts {path} {problem}", "set eval.prompts=<a .jsonl file of prompts>, or null for the shipped example")
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PosttrainError(f"eval.prompts {path} line {number} is not valid JSON ({err.msg})", fix) from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise PosttrainError(f'eval.prompts {path} line {number} has no "prompt" text', fix)
        creativity = row.get("creativity")
        numeric = isinstance(creativity, (int, float)) and not isinstance(creativity, bool) and math.isfinite(creativity)
        if not (creativity is None or numeric or (isinstance(creativity, str) and bucket_key(creativity))):
            raise PosttrainError(f"eval.prompts {path} line {number} has creativity {creativity!r}, not a number or a label", fix)
        creativity = float(creativity) if numeric else creativity
        prompts.append(DiversityPrompt(row["prompt"], creativity, bucket_of(creativity, labels, thresholds)))
    if not prompts:
        raise PosttrainError(f"eval.prompts {path} holds no prompt", fix)
    return prompts


def check_settings(settings: dict) -> None:
    """The sampling fields of the eval group (conf/eval/diversity.yaml)."""

    def number(key: str):
        value = settings.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    k, temperature, top_p, tokens = number("k"), number("temperature"), number("top_p"), number("max_new_tokens")
    if not isinstance(k, int) or k < 2:
        raise PosttrainError(f"eval.k={settings.get('k')}: diversity needs at least 2 completions per prompt", "set eval.k=4")
    if temperature is None or temperature <= 0:
        raise PosttrainError(f"eval.temperature={settings.get('temperature')}: diversity needs sampling (> 0)", "set eval.temperature=1.0")
    if top_p is None or not 0 < top_p <= 1:
        raise PosttrainError(f"eval.top_p={settings.get('top_p')} is not in (0, 1]", "set eval.top_p=1.0")
    if not isinstance(tokens, int) or tokens <= 0:
        raise PosttrainError(f"eval.max_new_tokens={settings.get('max_new_tokens')} is not a positive integer", "set eval.max_new_tokens=64")


# --- the evaluation ---------------------------------------------------------------------------------------

def completion_lengths(new_ids: torch.Tensor, stop_ids: set[int]) -> list[int]:
    """Tokens of each generated row before its first end-of-sequence or padding token (all when none)."""
    lengths = []
    for row in new_ids.tolist():
        ends = [i for i, token in enumerate(row) if token in stop_ids]
        lengths.append(ends[0] if ends else len(row))
    return lengths


@torch.no_grad()
def sample_completions(model, tokenizer, prompts: list[str], settings: dict, seed: int) -> list[tuple[list[str], list[int]]]:
    """eval.k sampled completions of each prompt (a user turn of the chat template when the tokenizer has one)
    and their lengths in tokens. torch is seeded with `seed` before each prompt, so a prompt's samples do not
    depend on which other prompts are asked; the global random state is restored afterwards (a training run's
    randomness is left as it was)."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    eos = model.generation_config.eos_token_id
    stop_ids = {*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    devices = [model.device] if model.device.type == "cuda" else []
    was_training = model.training
    model.eval()
    groups = []
    try:
        with torch.random.fork_rng(devices=devices):
            for prompt in prompts:
                if chat:
                    prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                           add_generation_prompt=True)
                inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=not chat).to(model.device)
                torch.manual_seed(seed)
                output = model.generate(**inputs, do_sample=True, temperature=float(settings["temperature"]),
                                        top_p=float(settings["top_p"]), max_new_tokens=int(settings["max_new_tokens"]),
                                        num_return_sequences=int(settings["k"]), pad_token_id=tokenizer.pad_token_id)
                new_ids = output[:, inputs["input_ids"].shape[1] :]
                texts = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
                groups.append((texts, completion_lengths(new_ids, stop_ids)))
    finally:
        model.train(was_training)
    return groups


def embedding_diversities(groups: list[list[str]], embedder: str | None, device: str) -> list[float]:
    """Each group's mean pairwise cosine distance, with posttrain.pairs' embedder and criterion=embedding
    score (each text's mean distance to the others of its group; their mean is the mean over pairs)."""
    from posttrain.scoring.candidates import Prompt
    from posttrain.scoring.embedding import embedding_scores

    cfg = OmegaConf.create({"embedder": embedder, "batch_size": 64})
    scores = embedding_scores([Prompt("", list(texts)) for texts in groups], cfg, device)
    return [max(0.0, sum(s) / len(s)) for s in scores]  # identical texts: 0 up to float noise


def check(settings: dict) -> tuple[list[DiversityPrompt], DictConfig | None]:
    """Everything the eval group says, checked before any model samples (a registry row's check): the
    sampling fields, the buckets, the embedder, the judge and the prompt file; its prompts and the judge's
    settings (None when off)."""
    from posttrain.scoring.embedding import embedder_source

    check_settings(settings)
    labels, thresholds = parse_buckets(settings.get("buckets"))
    embedder_source(OmegaConf.create({"embedder": settings.get("embedder")}))
    judge = eval_judge_config(settings.get("judge"))
    path = Path(str(settings["prompts"])).expanduser() if settings.get("prompts") else shipped_prompts()
    return read_diversity_prompts(path, labels, thresholds), judge


def evaluate(model, tokenizer, request: EvalRequest) -> EvalOutput:
    """eval.k completions of each prompt of eval.prompts (request.limit of them at most, a seeded subset)."""
    settings = request.settings
    all_prompts, judge = check(settings)
    limit = request.limit if request.limit is not None else settings.get("limit")
    prompts = spread_subset(all_prompts, limit, request.seed)

    sampled = sample_completions(model, tokenizer, [p.text for p in prompts], settings, request.seed)
    groups = [texts for texts, _ in sampled]
    device = str(model.device)
    diversities = embedding_diversities(groups, settings.get("embedder"), device)
    records = []
    for prompt, (texts, tokens), diversity in zip(prompts, sampled, diversities):
        records.append({"prompt": prompt.text, "creativity": prompt.creativity, "bucket": prompt.bucket,
                        "completions": texts, "embedding_diversity": diversity, "distinct_1": distinct_n(texts, 1),
                        "distinct_2": distinct_n(texts, 2), "mean_completion_tokens": sum(tokens) / len(tokens)})
    metrics = FIGURES
    if judge is not None:
        from posttrain.scoring.candidates import Prompt
        from posttrain.scoring.judge import judge_scores

        ratings = judge_scores([Prompt(p.text, list(texts)) for p, texts in zip(prompts, groups)], judge, device)
        for record, prompt_ratings in zip(records, ratings):
            record.update({"judge_ratings": prompt_ratings, JUDGE: sum(prompt_ratings) / len(prompt_ratings)})
        metrics = (*FIGURES, JUDGE)
    return EvalOutput(aggregate(records, metrics), records)
