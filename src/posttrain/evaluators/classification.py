"""The classification evaluator (eval=classification; the NLI guide): each eval row's label is the candidate
label whose tokens the model scores most likely after the row's prompt (no free-running generation), and
the run reports accuracy, macro-F1 and the confusion matrix. Works for any dataset whose rows are rendered
to prompt/completion with the label as the completion (dataset.template, e.g. dataset=nli)."""

from __future__ import annotations

import random

import torch

from posttrain.data.loading import eval_rows
from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalOutput, EvalRequest


def confusion_matrix(gold: list[str], predicted: list[str]) -> dict[str, dict[str, int]]:
    """{gold label: {predicted label: rows}}, gold labels sorted, only the pairs that occur."""
    confusion: dict[str, dict[str, int]] = {label: {} for label in sorted(set(gold))}
    for g, p in zip(gold, predicted):
        confusion[g][p] = confusion[g].get(p, 0) + 1
    return confusion


def label_metrics(confusion: dict[str, dict[str, int]]) -> dict:
    """Accuracy, macro-F1 (the mean of each gold label's F1) and the row count of a confusion matrix."""
    rows = sum(sum(row.values()) for row in confusion.values())
    correct = sum(row.get(label, 0) for label, row in confusion.items())
    f1s = []
    for label, row in confusion.items():
        true_positives = row.get(label, 0)
        predicted = sum(other.get(label, 0) for other in confusion.values())
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted as label + gold label)
        denominator = predicted + sum(row.values())
        f1s.append(2 * true_positives / denominator if denominator else 0.0)
    return {"label_accuracy": correct / rows if rows else 0.0,
            "label_macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
            "labelled_rows": rows}


def completion_tokens(tokenizer, prompt: str, completion: str) -> tuple[list[int], int]:
    """The token ids of prompt + completion and how many of them (the tail) are the completion's, found as
    TRL's SFT does: tokenize the prompt and the whole text and take what follows the prompt's length."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    ids = tokenizer(prompt + completion)["input_ids"]
    return ids, max(len(ids) - len(prompt_ids), 0)


@torch.no_grad()
def completion_logprobs(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[float]:
    """The summed log-probability of each (prompt, completion) pair's completion tokens given its prompt."""
    encoded = [completion_tokens(tokenizer, prompt, completion) for prompt, completion in pairs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (ids, _) in enumerate(chunk):  # right padding: positions stay 0..len-1
                input_ids[i, : len(ids)] = torch.tensor(ids)
                attention_mask[i, : len(ids)] = 1
            logits = model(input_ids=input_ids.to(model.device),
                           attention_mask=attention_mask.to(model.device)).logits.float()
            for i, (ids, tail) in enumerate(chunk):
                if not tail:
                    scores.append(float("-inf"))
                    continue
                # the logits at position p predict token p + 1
                predicting = torch.log_softmax(logits[i, len(ids) - tail - 1 : len(ids) - 1], dim=-1)
                targets = torch.tensor(ids[len(ids) - tail :], device=predicting.device)
                scores.append(predicting.gather(1, targets[:, None]).sum().item())
    finally:
        model.train(was_training)
    return scores


def evaluate(model, tokenizer, request: EvalRequest) -> EvalOutput:
    """Every eval row of the dataset (request.limit, else eval.limit, of them at most: a seeded subset),
    each labelled with the candidate label of highest summed log-probability."""
    data = request.dataset
    rows = eval_rows(data, "completion", request.seed)
    if not rows:
        raise PosttrainError(f"eval=classification scores the eval split of dataset {data.name}, and it has none",
                             "set dataset.eval_path=FILE, or dataset.eval_fraction above 0 to hold out training rows")
    limit = request.limit if request.limit is not None else request.settings.get("limit")
    if limit is not None and int(limit) < len(rows):  # a seeded subset, the same one at every evaluation
        rows = random.Random(request.seed).sample(rows, int(limit))
    labels = request.settings.get("labels") or sorted({row["completion"].strip() for row in rows})
    labels = [str(label).strip() for label in labels]
    # the completions' own spacing: the template's " {label}" is scored as " entailment", as trained
    completion = rows[0]["completion"]
    lead = completion[: len(completion) - len(completion.lstrip())]
    pairs = [(row["prompt"], lead + label) for row in rows for label in labels]
    scores = completion_logprobs(model, tokenizer, pairs, int(request.settings.get("batch_size") or 16))
    gold, predicted, samples = [], [], []
    for index, row in enumerate(rows):
        row_scores = scores[index * len(labels) : (index + 1) * len(labels)]
        choice = labels[max(range(len(labels)), key=row_scores.__getitem__)]
        gold.append(row["completion"].strip())
        predicted.append(choice)
        samples.append({"prompt": row["prompt"], "gold": gold[-1], "predicted": choice,
                        "label_logprobs": dict(zip(labels, row_scores))})
    confusion = confusion_matrix(gold, predicted)
    return EvalOutput({**label_metrics(confusion), "label_confusion": confusion}, samples)
