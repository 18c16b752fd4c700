"""A GGUF model unpacked once: transformers dequantizes a GGUF file on every load (SmolLM2-135M: 15 s for
the model and its tokenizer on 2 cores), so posttrain keeps the result as safetensors and a tokenizer folder
under its cache (0.2 s to load again).

The cache is `$POSTTRAIN_CACHE`, else `$XDG_CACHE_HOME/posttrain`, else `~/.cache/posttrain`; an entry is named
by the GGUF file (path, size, modification time), the dtype and the transformers version, so a changed file
or library makes a new one. Entries are written to a temporary folder and renamed into place, so concurrent
loads never read half an entry; if the cache cannot be written the model loads from the GGUF file as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import transformers

log = logging.getLogger(__name__)


def cache_root() -> Path:
    if os.environ.get("POSTTRAIN_CACHE"):
        return Path(os.environ["POSTTRAIN_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "posttrain"


def entry(folder: str, gguf_file: str, kind: str) -> Path:
    """The cache folder for one GGUF file as `kind` (tokenizer, or the model in a dtype)."""
    source = (Path(folder) / gguf_file).resolve()
    stat = source.stat()
    key = f"{source}|{stat.st_size}|{stat.st_mtime_ns}|{kind}|{transformers.__version__}"
    return cache_root() / "gguf" / f"{source.stem}-{kind}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def cached(folder: str, gguf_file: str, kind: str, load_gguf: Callable, load_saved: Callable):
    """`load_saved(entry)` when the cache holds this GGUF file as `kind`; else `load_gguf()`, saved into the
    cache for next time (a missing file goes straight to `load_gguf`, which names it in its error)."""
    if not (Path(folder) / gguf_file).is_file():
        return load_gguf()
    target = entry(folder, gguf_file, kind)
    if target.is_dir():
        return load_saved(str(target))
    loaded = load_gguf()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as err:
        log.warning("could not cache the dequantized GGUF model under %s: %s", target.parent, err)
        return loaded
    try:
        loaded.save_pretrained(str(staging))
    except OSError as err:
        log.warning("could not cache the dequantized GGUF model in %s: %s", target, err)
        shutil.rmtree(staging, ignore_errors=True)
        return loaded
    try:
        staging.rename(target)
        log.info("cached the dequantized GGUF model in %s", target)
    except OSError:  # another process put the same entry in place first
        shutil.rmtree(staging, ignore_errors=True)
    return loaded
