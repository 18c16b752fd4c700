"""Print completions from a finished run, like the DPO guide's inference example:

    python -m posttrain.sample run=outputs/<run> prompt="X to play\\n1|2|3\\n4|X|6\\n7|8|O\\n"
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import set_seed

from posttrain.compose import run_tool
from posttrain.logger import quiet_libraries
from posttrain.models.loading import IDENTITY_FILE, load_trained, resolve_path


def _wants_chat(cfg: DictConfig, model_dir: Path) -> bool:
    if cfg.chat != "auto":
        return bool(cfg.chat)
    identity = model_dir / IDENTITY_FILE
    return bool(identity.exists() and json.loads(identity.read_text()).get("chat", False))


def sample(cfg: DictConfig) -> list[str]:
    quiet_libraries()
    set_seed(int(cfg.seed))
    model, tokenizer = load_trained(str(cfg.run))
    model.eval()
    prompt = str(cfg.prompt).replace("\\n", "\n")
    if _wants_chat(cfg, Path(resolve_path(str(cfg.run)))):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    greedy = float(cfg.temperature) == 0
    with torch.no_grad():
        output = model.generate(
            **inputs,
            do_sample=not greedy,
            temperature=None if greedy else float(cfg.temperature),
            top_p=None if greedy else float(cfg.top_p),
            max_new_tokens=int(cfg.max_new_tokens),
            num_return_sequences=1 if greedy else int(cfg.num_samples),
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def main() -> None:
    def body(cfg: DictConfig) -> None:
        for index, text in enumerate(sample(cfg), start=1):
            print(f"--- completion {index} ---\n{text}")

    run_tool("sample", body)


if __name__ == "__main__":
    main()
