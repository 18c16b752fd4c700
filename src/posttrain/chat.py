"""Talk to a finished run's model in the terminal, the chat template applied and the history kept:

    python -m posttrain.chat run=outputs/<run> [system="You are terse."] [temperature=0]
    python -m posttrain.chat --help

Each line read is a user turn; /reset clears the history; /exit, an empty line or end of input ends. A model
not trained on chat data (the tic-tac-toe model) completes each line on its own instead, with no history
(\\n in a line stands for a newline); chat=true or chat=false overrides that choice. Lines come from
standard input, so a file can be piped in.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig
from transformers import set_seed

from posttrain.compose import run_tool
from posttrain.logger import quiet_libraries
from posttrain.models.loading import load_trained, resolve_path
from posttrain.sample import generate, wants_chat


def chat(cfg: DictConfig, lines, write) -> int:
    """Answer each of `lines` with `write`; returns the number of replies."""
    quiet_libraries()
    set_seed(int(cfg.seed))
    model, tokenizer = load_trained(str(cfg.run))
    model.eval()
    templated = wants_chat(cfg, Path(resolve_path(str(cfg.run))), tokenizer) and bool(getattr(tokenizer, "chat_template", None))
    start = [{"role": "system", "content": str(cfg.system)}] if cfg.system and templated else []
    history = list(start)
    mode = "chat template, history kept" if templated else "not a chat model: each line is completed on its own"
    write(f"chatting with {cfg.run} ({mode}); /reset clears, /exit ends\n")
    replies = 0
    for line in lines:
        text = line.rstrip("\n")
        if not text.strip() or text.strip() == "/exit":
            break
        if text.strip() == "/reset":
            history = list(start)
            write("(history cleared)\n")
            continue
        if templated:
            history.append({"role": "user", "content": text})
            prompt = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        else:
            prompt = text.replace("\\n", "\n")
        reply = generate(model, tokenizer, prompt, cfg)[0].strip()
        if templated:
            history.append({"role": "assistant", "content": reply})
        write(f"model> {reply}\n")
        replies += 1
    return replies


def main() -> None:
    def body(cfg: DictConfig) -> None:
        def lines():
            while True:
                if sys.stdin.isatty():
                    sys.stdout.write("you> ")
                    sys.stdout.flush()
                line = sys.stdin.readline()
                if not line:
                    return
                yield line

        chat(cfg, lines(), lambda text: (sys.stdout.write(text), sys.stdout.flush()))

    run_tool("chat", body)


if __name__ == "__main__":
    main()
