"""Dataset mixtures (the MiniMind plan's mixer): several sources drawn by ratio into one training set.

Ratios must be positive and are normalised to sum to 1. The mixture has `size` rows (null: as many as
possible without repeating a row, i.e. min over sources of rows / ratio); source i contributes
round(size x ratio_i) rows, sampled without replacement when it has enough and with replacement
otherwise. Sampling is deterministic for a seed.

The prepared mixture is cached as JSON lines under `cache_dir`, named by a key built from every source's
content hash, the ratios, the size, the seed, the method's row form and the tokenizer, so a stale cache is
never reused. With use_prepared=true a cache whose key matches and whose content hash verifies is reused;
otherwise (or with use_prepared=false) the mixture is rebuilt and the cache rewritten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posttrain.errors import PosttrainError
from posttrain.rundir import write_atomic

log = logging.getLogger(__name__)


def normalised_ratios(sources: list[dict]) -> list[float]:
    ratios = []
    for index, source in enumerate(sources, start=1):
        ratio = source.get("ratio")
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            raise PosttrainError(
                f"mixture source {index} has ratio {ratio!r}; ratios must be positive numbers",
                "give every source a ratio > 0 (they are normalised to sum to 1)",
            )
        ratios.append(float(ratio))
    total = sum(ratios)
    return [r / total for r in ratios]


def source_fingerprint(source: dict) -> str:
    """The content hash of a source's file plus its settings, or the settings of a built-in source
    (`source` is resolved: a named dataset's config merged with the source's own fields)."""
    if source.get("builtin"):
        return "builtin:" + json.dumps(source, sort_keys=True, default=str)
    path = Path(str(source["path"])).expanduser()
    if not path.is_file():
        raise PosttrainError(f"mixture source file {path} does not exist", "fix its path in dataset.mixture.sources")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    settings = {k: v for k, v in source.items() if k not in ("path", "ratio", "missing_hint")}
    return digest.hexdigest() + json.dumps(settings, sort_keys=True, default=str)


def mixture_key(sources: list[dict], ratios: list[float], size, seed: int, form: str, tokenizer: str) -> str:
    parts = {
        "sources": [source_fingerprint(s) for s in sources],
        "ratios": [round(r, 12) for r in ratios],
        "size": size,
        "seed": seed,
        "form": form,
        "tokenizer": tokenizer,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def mix(rows_by_source: list[list[dict]], ratios: list[float], size: int | None, seed: int) -> list[dict]:
    if size is None:
        size = int(min(len(rows) / ratio for rows, ratio in zip(rows_by_source, ratios)))
    rng = random.Random(seed)
    mixed: list[dict] = []
    for rows, ratio in zip(rows_by_source, ratios):
        want = round(size * ratio)
        if want <= len(rows):
            mixed += rng.sample(rows, want)
        else:
            log.warning("mixture: a source has %d rows for %d draws; sampling with replacement", len(rows), want)
            mixed += [rng.choice(rows) for _ in range(want)]
    rng.shuffle(mixed)
    return mixed


class MixtureCache:
    def __init__(self, cache_dir: str, key: str):
        self.rows_file = Path(cache_dir).expanduser() / f"mixture-{key}.jsonl"
        self.meta_file = self.rows_file.with_suffix(".json")

    def load(self) -> list[dict] | None:
        """The cached rows if present and intact (content hash matches), else None."""
        try:
            meta = json.loads(self.meta_file.read_text())
            data = self.rows_file.read_bytes()
        except (OSError, json.JSONDecodeError):
            return None
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            log.warning("mixture cache %s does not match its hash; rebuilding", self.rows_file)
            return None
        return [json.loads(line) for line in data.decode().splitlines()]

    def save(self, rows: list[dict], description: dict) -> None:
        text = "".join(json.dumps(row) + "\n" for row in rows)
        write_atomic(self.rows_file, text)
        meta = {**description, "rows": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}
        write_atomic(self.meta_file, json.dumps(meta, indent=2) + "\n")


def prepare_mixture(cfg: DictConfig, form: str, seed: int, tokenizer: str, resolve_source, load_source) -> list[dict]:
    """The mixed training rows. `resolve_source(source_cfg)` gives a source's full settings (a named
    dataset's config under the source's own fields); `load_source(resolved)` turns it into rows of `form`."""
    mixture = cfg.mixture
    sources = OmegaConf.to_container(mixture.sources, resolve=True)
    if not sources:
        raise PosttrainError("dataset.mixture.sources is empty", "list at least one source with a ratio")
    ratios = normalised_ratios(sources)
    size = mixture.get("size")
    resolved = [resolve_source(OmegaConf.create(source)) for source in sources]
    plain = [OmegaConf.to_container(source, resolve=True) for source in resolved]
    key = mixture_key(plain, ratios, size, seed, form, tokenizer)
    cache = MixtureCache(str(cfg.get("cache_dir") or "data/prepared"), key)
    if cfg.get("use_prepared", False):
        rows = cache.load()
        if rows is not None:
            log.info("mixture: reusing prepared %s (%d rows)", cache.rows_file, len(rows))
            return rows
    rows_by_source = [load_source(source) for source in resolved]
    rows = mix(rows_by_source, ratios, size, seed)
    cache.save(rows, {"key": key, "sources": sources, "ratios": ratios, "seed": seed, "form": form})
    shares = ", ".join(f"{r:.2f}" for r in ratios)
    log.info("mixture: %d rows from %d sources (ratios %s), cached at %s", len(rows), len(sources), shares, cache.rows_file)
    return rows
