"""python -m posttrain.pairs [criterion=embedding|quality|llm_judge] [input=<candidates file>] [output=...]"""

from __future__ import annotations

from omegaconf import DictConfig

from posttrain.compose import run_tool


def main() -> None:
    def body(cfg: DictConfig) -> None:
        from posttrain.pairs.build import build_pairs

        build_pairs(cfg)

    run_tool("pairs", body)


if __name__ == "__main__":
    main()
