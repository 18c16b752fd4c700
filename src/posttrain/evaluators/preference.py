"""The preference evaluator (eval=preference): on the dataset's held-out pairs, how often the model prefers the
chosen response to the rejected one, and by how much.

A causal LM's preference is DPO's implicit reward: beta x (log pi(chosen) - log pi_ref(chosen)) minus the same
for rejected, pi_ref being the base model with the adapter switched off (a LoRA model). Without a reference
at hand (full fine-tuning, or eval.reference=none) it is the plain log-probability margin log pi(chosen) -
log pi(rejected). A reward model (method=reward) scores chosen and rejected itself.

With eval.judge (posttrain.pairs' LLM judge) or eval.reward_model (a method=reward run), the model also
answers eval.win_rate_prompts of the held-out prompts, its reference (the adapter-disabled base) answers the
same prompts with the same seed, and the judge or reward model scores both: preference_win_rate is the share
of prompts where the model's answer scores higher (a tie counts half)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch

from posttrain.data.loading import eval_rows
from posttrain.errors import PosttrainError
from posttrain.evaluators import EvalOutput, EvalRequest
from posttrain.evaluators.classification import completion_logprobs
from posttrain.scoring.judge import eval_judge_config

log = logging.getLogger(__name__)


def win_rate(model_scores: list[float], reference_scores: list[float]) -> float:
    """The share of prompts whose model answer scores above the reference's; a tie counts half."""
    wins = [1.0 if m > r else 0.5 if m == r else 0.0 for m, r in zip(model_scores, reference_scores)]
    return sum(wins) / len(wins)


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
    metrics = preference_metrics(margins)
    if (settings.get("judge") or settings.get("reward_model")) and model.can_generate() and request.limit is None:
        asked = random.Random(request.seed).sample(prompts, min(len(prompts), int(settings.get("win_rate_prompts", 16))))
        won, answered = win_rate_against_reference(model, tokenizer, asked, settings, request.seed)
        metrics.update(won)
        samples += answered
    return EvalOutput(metrics, samples)


def check(settings: dict) -> None:
    """eval.judge and eval.reward_model, checked before training (the registry row's check)."""
    judge, reward_model = eval_judge_config(settings.get("judge")), settings.get("reward_model")
    if judge is not None and reward_model:
        raise PosttrainError("eval.judge and eval.reward_model both score the win rate", "give one of them")
    if reward_model and not (Path(str(reward_model)).expanduser() / "config.yaml").is_file():
        raise PosttrainError(f"eval.reward_model={reward_model} is not a posttrain run directory",
                             "point it at a method=reward run (its folder under outputs/ or multirun/)")
    count = settings.get("win_rate_prompts", 16)
    if not isinstance(count, int) or count < 1:
        raise PosttrainError(f"eval.win_rate_prompts={count} is not a positive integer", "set eval.win_rate_prompts=16")


def answer_scores(prompts: list[str], answers: list[list[str]], settings: dict, device: str) -> list[list[float]]:
    """Each prompt's answers scored by eval.judge's expected 1-9 rating or eval.reward_model's reward."""
    if settings.get("reward_model"):
        from posttrain.models.loading import load_trained

        scorer, scorer_tokenizer = load_trained(str(settings["reward_model"]), head="sequence_classification")
        scorer.to(device)
        flat = reward_scores(scorer, scorer_tokenizer, [p + a for p, group in zip(prompts, answers) for a in group],
                             int(settings.get("batch_size") or 16))
        width = len(answers[0])
        return [flat[i : i + width] for i in range(0, len(flat), width)]
    from posttrain.scoring.candidates import Prompt
    from posttrain.scoring.judge import judge_scores

    return judge_scores([Prompt(p, list(group)) for p, group in zip(prompts, answers)],
                        eval_judge_config(settings["judge"]), device)


def win_rate_against_reference(model, tokenizer, prompts: list[str], settings: dict, seed: int) -> tuple[dict, list]:
    """The model's and its reference's answers to `prompts`, scored; {} when there is no reference (a model
    without a LoRA adapter: its base is not at hand)."""
    from posttrain.evaluators.diversity import sample_completions

    if not hasattr(model, "disable_adapter"):
        log.warning("eval=preference: no win rate: it compares with the adapter-disabled base, and this model has "
                    "no LoRA adapter (train with lora_rank > 0)")
        return {}, []
    sampling = {"k": 1, "temperature": float(settings.get("temperature", 0.7)), "top_p": 1.0,
                "max_new_tokens": int(settings.get("max_new_tokens", 64))}
    answers = [texts[0] for texts, _ in sample_completions(model, tokenizer, prompts, sampling, seed)]
    with model.disable_adapter():
        references = [texts[0] for texts, _ in sample_completions(model, tokenizer, prompts, sampling, seed)]
    scores = answer_scores(prompts, [[a, r] for a, r in zip(answers, references)], settings, str(model.device))
    model_scores, reference_scores = [s[0] for s in scores], [s[1] for s in scores]
    metrics = {"preference_win_rate": win_rate(model_scores, reference_scores),
               "win_rate_model_score": sum(model_scores) / len(model_scores),
               "win_rate_reference_score": sum(reference_scores) / len(reference_scores)}
    samples = [{"prompt": p, "answer": a, "reference_answer": r, "answer_score": ms, "reference_score": rs}
               for p, a, r, ms, rs in zip(prompts, answers, references, model_scores, reference_scores)]
    return metrics, samples
