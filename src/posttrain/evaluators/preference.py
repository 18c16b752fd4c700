"""The preference evaluator (eval=preference): on the dataset's held-out pairs, how often the model prefers the
chosen response to the rejected one, and by how much.

A causal LM's preference is DPO's implicit reward: beta x (log pi(chosen) - log pi_ref(chosen)) minus the same
for rejected, pi_ref being the base model with the adapter switched off (a LoRA model). Without a reference
at hand (full fine-tuning, or eval.reference=none) it is the plain log-probability margin log pi(chosen) -
log pi(rejected). A reward model (method=reward) scores chosen and rejected itself."""

from __future__ import annotations

import random

import torch

from posttrain.data.loading import eval_rows
from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalOutput, EvalRequest
from posttrain.evaluators.classification import completion_logprobs


def preference_metrics(margins: list[float]) -> dict:
    """Accuracy (margins above 0: ties count as wrong), mean margin and the number of pairs."""
    return {"preference_accuracy": sum(m > 0 for m in margins) / len(margins),
            "preference_margin": sum(margins) / len(margins), "preference_pairs": len(margins)}


def implicit_margins(chosen: list[float], rejected: list[float], reference_chosen: list[float] | None,
                     reference_rejected: list[float] | None, beta: float) -> list[float]:
    """DPO's implicit reward margin per pair, or the log-probability margin without a reference."""
    if reference_chosen is None:
        return [c - r for c, r in zip(chosen, rejected)]
    return [beta * ((c - rc) - (r - rr)) for c, r, rc, rr in zip(chosen, rejected, reference_chosen, reference_rejected)]


@torch.no_grad()
def reward_scores(model, tokenizer, texts: list[str], batch_size: int) -> list[float]:
    """A sequence-classification model's score of each text."""
    was_training = model.training
    model.eval()
    scores: list[float] = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True)
            batch = {k: v.to(model.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            scores += model(**batch).logits[:, 0].float().tolist()
    finally:
        model.train(was_training)
    return scores


def _text(value) -> str:
    if isinstance(value, str):
        return value
    raise PosttrainError("eval=preference scores text pairs, and this dataset's pairs are conversations",
                         "use eval=none, or a dataset of prompt/chosen/rejected texts")


def evaluate(model, tokenizer, request: EvalRequest) -> EvalOutput:
    """Every held-out pair (request.limit, else eval.limit, of them at most: a seeded subset)."""
    settings = request.settings
    rows = eval_rows(request.dataset, "preference", request.seed)
    if not rows:
        raise PosttrainError(f"eval=preference scores the eval split of dataset {request.dataset.name}, and it has none",
                             "set dataset.eval_path=FILE, or dataset.eval_fraction above 0 to hold out training rows")
    limit = request.limit if request.limit is not None else settings.get("limit")
    if limit is not None and int(limit) < len(rows):  # a seeded subset, the same one at every evaluation
        rows = random.Random(request.seed).sample(rows, int(limit))
    batch_size = int(settings.get("batch_size") or 16)
    prompts = [_text(row["prompt"]) for row in rows]
    chosen_texts, rejected_texts = [_text(r["chosen"]) for r in rows], [_text(r["rejected"]) for r in rows]
    if not model.can_generate():  # a reward model
        chosen = reward_scores(model, tokenizer, [p + c for p, c in zip(prompts, chosen_texts)], batch_size)
        rejected = reward_scores(model, tokenizer, [p + r for p, r in zip(prompts, rejected_texts)], batch_size)
        margins, scored_by = [c - r for c, r in zip(chosen, rejected)], "reward model"
    else:
        with torch.no_grad():
            chosen = completion_logprobs(model, tokenizer, list(zip(prompts, chosen_texts)), batch_size)
            rejected = completion_logprobs(model, tokenizer, list(zip(prompts, rejected_texts)), batch_size)
            reference_chosen = reference_rejected = None
            if settings.get("reference", "auto") == "auto" and hasattr(model, "disable_adapter"):
                with model.disable_adapter():  # a LoRA model's base is its reference
                    reference_chosen = completion_logprobs(model, tokenizer, list(zip(prompts, chosen_texts)), batch_size)
                    reference_rejected = completion_logprobs(model, tokenizer, list(zip(prompts, rejected_texts)),
                                                             batch_size)
        margins = implicit_margins(chosen, rejected, reference_chosen, reference_rejected, float(settings.get("beta", 0.1)))
        scored_by = "implicit reward" if reference_chosen is not None else "log-probability margin"
    samples = [{"prompt": p, "chosen": c, "rejected": r, "margin": m, "scored_by": scored_by}
               for p, c, r, m in zip(prompts, chosen_texts, rejected_texts, margins)]
    return EvalOutput(preference_metrics(margins), samples)
