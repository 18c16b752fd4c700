"""python -m posttrain.report DIR (or dir=DIR) [out=...] [metrics=[...]]: see posttrain.report."""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from posttrain.errors import PosttrainError


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def command_line(args: list[str]) -> list[str]:
    """Overrides for the report config: a bare DIR (`python -m posttrain.report DIR`) becomes dir=DIR, and
    folder values are quoted (job folders have = and , in their names)."""
    overrides, folders = [], []
    for arg in args:
        key, _, value = arg.partition("=")
        if "=" not in arg or Path(arg).exists():
            folders.append(arg)
        elif key in ("dir", "out") and value and value[0] not in "'\"":
            overrides.append(f"{key}={_quoted(value)}")
        else:
            overrides.append(arg)
    if len(folders) > 1:
        raise PosttrainError(f"one folder at a time, got {len(folders)}: {' '.join(folders)}", "give a single DIR")
    return overrides + [f"dir={_quoted(folder)}" for folder in folders]


def main() -> None:
    from posttrain.compose import run_tool
    from posttrain.errors import fail
    from posttrain.report.write import write_report

    def body(cfg: DictConfig) -> None:
        report = write_report(cfg)
        print(report.table, end="")
        print(report.ranking, end="")
        print(f"report: {report.markdown}\n        {report.csv}")
        for plot in report.plots:
            print(f"plot:   {plot}")

    try:
        sys.argv[1:] = command_line(sys.argv[1:])
    except PosttrainError as error:
        fail(error)
    run_tool("report", body)


if __name__ == "__main__":
    main()
