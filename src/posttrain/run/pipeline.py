"""Stages: runs chained in order inside one run directory, each starting from the previous final model
(the tic-tac-toe guide's SFT -> DPO, the MiniMind plan's SFT -> DPO -> GRPO).

Each stage is the full config composed again with the stage's overrides, then the command line's (so a
knob given on the command line reaches every stage), then model.path set to the previous stage's final/.
Stage k lives in <run dir>/<k>-<name>/ as a complete run directory of its own; the pipeline's own
metrics.jsonl, checkpoints.jsonl and results.json gather the stages', and final/ links to the last one.
A completed stage is not run again when the pipeline is resumed.
"""

from __future__ import annotations

import json
import logging
import os

from hydra import compose
from omegaconf import DictConfig

from posttrain.run.rundir import COMPLETED, RunDir, read_jsonl, write_atomic

log = logging.getLogger(__name__)

# Command-line keys that stay with the pipeline instead of reaching its stages.
PIPELINE_KEYS = ("method", "stages", "run_name")


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def pipeline_stages(cfg: DictConfig, command_line: list[str]) -> list[tuple[str, list[str]]]:
    """The stages to run, or none: method= on the command line runs that one method instead."""
    if not cfg.get("stages") or any(override_key(o) == "method" for o in command_line):
        return []
    return [(str(name), list(overrides)) for name, overrides in cfg.stages.items()]


def run_pipeline(cfg: DictConfig, run_dir: RunDir, command_line: list[str], config_name: str) -> dict:
    from posttrain.run.train import config_for_run, train_run

    stages = pipeline_stages(cfg, command_line)
    passed_on = [o for o in command_line if override_key(o) not in PIPELINE_KEYS]
    results_by_stage: dict[str, dict] = {}
    stage_dirs: list[tuple[str, RunDir]] = []
    previous = None
    for index, (name, overrides) in enumerate(stages, start=1):
        stage_dir = RunDir(run_dir.path / f"{index}-{name}")
        stage_overrides = [*overrides, *passed_on, "stages={}"]
        if previous is not None:
            stage_overrides.append(f"model.path={previous.final}")
        stage_cfg = compose(config_name=config_name, overrides=stage_overrides)
        if stage_dir.is_completed():
            log.info("stage %s: already complete in %s", name, stage_dir.path)
            results = stage_dir.read_results()
        else:
            log.info("stage %d/%d: %s (%s)", index, len(stages), name, " ".join(overrides))
            stage_dir.set_status("running")
            stage_dir.write_config(config_for_run(stage_cfg))
            results = train_run(stage_cfg, stage_dir)
        results_by_stage[name] = results
        stage_dirs.append((name, stage_dir))
        previous = stage_dir
    return _gather(run_dir, stage_dirs, results_by_stage)


def _gather(run_dir: RunDir, stage_dirs: list[tuple[str, RunDir]], results_by_stage: dict[str, dict]) -> dict:
    metrics, checkpoints = [], []
    for name, stage_dir in stage_dirs:
        metrics += [{"stage": name, **record} for record in read_jsonl(stage_dir.metrics)]
        checkpoints += [
            {**record, "name": f"{name}/{record['name']}", "stage": name}
            for record in stage_dir.checkpoint_records()
        ]
    last_name, last_dir = stage_dirs[-1]
    if run_dir.final.is_symlink() or run_dir.final.exists():
        run_dir.final.unlink()
    os.symlink(os.path.relpath(last_dir.final, run_dir.path), run_dir.final)
    final = next(r for r in reversed(checkpoints) if r["name"] == f"{last_name}/final")
    checkpoints.append({**final, "name": "final", "path": str(run_dir.final)})
    write_atomic(run_dir.metrics, "".join(json.dumps(r) + "\n" for r in metrics))
    write_atomic(run_dir.checkpoint_log, "".join(json.dumps(r) + "\n" for r in checkpoints))
    results = {**results_by_stage[last_name], "stages": results_by_stage}
    run_dir.write_results(results)
    run_dir.set_status(COMPLETED)
    return results
