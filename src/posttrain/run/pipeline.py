"""Stages: runs chained in order inside one run directory, each starting from the previous final model
(the tic-tac-toe guide's SFT -> DPO, the MiniMind plan's SFT -> DPO -> GRPO).

A stage is a mapping of overrides, e.g. {method: dpo, learning_rate: 2e-5, dataset: {pairs_per_position: 1}}
(a scalar for a group name picks its option; nested mappings set fields). Each stage is the full config
composed again with the stage's overrides, then the command line's (so a knob given on the command line
reaches every stage; stages.<name>.<key>=... changes one stage), then model.path set to the previous
stage's final/.
Stage k lives in <run dir>/<k>-<name>/ as a complete run directory of its own; the pipeline's own
metrics.jsonl, checkpoints.jsonl and results.json gather the stages', and final/ links to the last one.
In a job of several processes every stage runs on all of them, one stage after another; rank 0 writes.
A completed stage is not run again when the pipeline is resumed, and in a sweep a stage identical to one
another job already finished (same config, same starting point) is copied rather than trained again: the
SFT stage of `--multirun dpo_beta=0.05,0.1,0.2` trains once.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from posttrain.distributed import barrier, is_main_process, run_dir_for_this_process
from posttrain.rundir import COMPLETED, RunDir, read_jsonl, write_atomic

log = logging.getLogger(__name__)


def stage_key(stage_cfg: DictConfig, previous_key: str | None) -> str:
    """What makes a stage's result: its config (less names and trackers) and the stage it starts from.
    dpo_beta is left out: a method that uses it carries it resolved in method.args. So are the stage list
    (a sweep over stages.dpo.* leaves the SFT stage as it is) and the sweeper's objective."""
    plain = OmegaConf.to_container(stage_cfg, resolve=True)
    for key in ("run_name", "wandb_project", "wandb_name", "logger", "hydra", "dpo_beta", "stages", "objective"):
        plain.pop(key, None)
    if previous_key is not None:
        plain["model"]["path"] = previous_key
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _reuse_sibling_stage(stage_dir: RunDir, key: str) -> bool:
    """In a sweep, another job may already have trained this exact stage: copy it instead of training."""
    for status_file in sorted(stage_dir.path.parent.parent.glob(f"*/{stage_dir.name}/status.json")):
        donor = RunDir(status_file.parent)
        if donor.path == stage_dir.path or not donor.is_completed() or donor.status().get("stage_key") != key:
            continue
        if stage_dir.path.exists():
            shutil.rmtree(stage_dir.path)
        shutil.copytree(donor.path, stage_dir.path, ignore=shutil.ignore_patterns("checkpoints", "wandb"))
        old, new = str(donor.path), str(stage_dir.path)
        records = [{**r, "path": r["path"].replace(old, new)} for r in stage_dir.checkpoint_records()]
        write_atomic(stage_dir.checkpoint_log, "".join(json.dumps(r) + "\n" for r in records if Path(r["path"]).exists()))
        stage_dir.set_status(COMPLETED, reused_from=old)
        log.info("stage %s: identical to %s, reused", stage_dir.name, old)
        return True
    return False


def starting_from(stage_cfg: DictConfig, start: Path | None) -> DictConfig:
    """A stage's config starting from `start` (the previous stage's final/; None: the first stage)."""
    if start is None:
        return stage_cfg
    started = copy.deepcopy(stage_cfg)
    started.model.path = str(start)
    return started


def run_pipeline(run_dir: RunDir, stages: list[tuple[str, list[str], DictConfig]], in_sweep: bool) -> dict:
    """`stages`: (name, overrides, config less its starting point) in order, as posttrain.compose.stage_configs
    builds them."""
    from posttrain.run.train import config_for_run, train_run

    results_by_stage: dict[str, dict] = {}
    stage_dirs: list[tuple[str, RunDir]] = []
    previous, previous_key = None, None
    for index, (name, overrides, stage_cfg) in enumerate(stages, start=1):
        stage_dir = run_dir_for_this_process(run_dir.path / f"{index}-{name}")  # only rank 0 writes it
        stage_cfg = starting_from(stage_cfg, previous.final if previous else None)
        key = stage_key(stage_cfg, previous_key)
        if stage_dir.is_completed():
            log.info("stage %s: already complete in %s", name, stage_dir.path)
        else:
            if in_sweep and is_main_process():
                _reuse_sibling_stage(stage_dir, key)
            barrier()  # every process sees the stage rank 0 reused, or none of them does
            if not stage_dir.is_completed():
                log.info("stage %d/%d: %s (%s)", index, len(stages), name, " ".join(overrides))
                stage_dir.set_status("running", stage_key=key)
                stage_dir.write_config(config_for_run(stage_cfg))
                train_run(stage_cfg, stage_dir)
        barrier()  # rank 0 has written the stage's final/ and results.json: the next stage starts from them
        results_by_stage[name] = stage_dir.read_results()
        stage_dirs.append((name, stage_dir))
        previous, previous_key = stage_dir, key
    if is_main_process():
        _gather(run_dir, stage_dirs, results_by_stage)
    barrier()
    return run_dir.read_results()


def _gather(run_dir: RunDir, stage_dirs: list[tuple[str, RunDir]], results_by_stage: dict[str, dict]) -> None:
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
    run_dir.write_results({**results_by_stage[last_name], "stages": results_by_stage})
    run_dir.set_status(COMPLETED)
