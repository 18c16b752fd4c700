"""conf/logger/: the experiment tracker. W&B runs through transformers' own WandbCallback; posttrain only
chooses its mode (offline without an API key), puts its files in the run directory and adds the composed
config with credentials masked."""

from __future__ import annotations

import logging
import netrc
import os
import sys
import warnings

from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

from posttrain.redact import redact, redact_text
from posttrain.rundir import RunDir

log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Progress bars and per-step dict prints of datasets/transformers would drown posttrain's own lines."""
    import datasets
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\.")
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_active(logger: DictConfig, project) -> bool:
    return logger.name == "wandb" and bool(project)


class WandbRunConfig(TrainerCallback):
    """Adds posttrain's composed config (credentials masked) to the W&B run once it has started."""

    def __init__(self, record: DictConfig):
        self.config = redact(OmegaConf.to_container(record, resolve=True))

    def on_train_begin(self, args, state, control, **kwargs):
        import wandb

        if wandb.run is not None:
            wandb.run.config.update({"posttrain": self.config}, allow_val_change=True)


def tracker_setup(logger: DictConfig, project, run_name: str, run_dir: RunDir,
                  record: DictConfig) -> tuple[list[str], list[TrainerCallback]]:
    """The trainer's report_to list and any callbacks the tracker needs. `logger`: the logger group;
    `project`: the wandb_project knob; `record`: the composed config the W&B run keeps (not read here)."""
    if not wandb_active(logger, project):
        return [], []
    mode = logger.mode
    if mode == "auto":
        mode = "online" if wandb_key_configured() else "offline"
    project = str(project)
    entity = logger.entity
    if "/" in project and not entity:  # the DPO guide's team/project form
        entity, project = project.split("/", 1)
    os.environ.update(
        WANDB_PROJECT=project,
        WANDB_MODE=mode,
        WANDB_DIR=str(run_dir.path),
        WANDB_LOG_MODEL="false",
        WANDB_WATCH="false",
        WANDB_SILENT="true",
    )
    if entity:
        os.environ["WANDB_ENTITY"] = str(entity)
    # W&B records the command line (sys.argv) with the run; Hydra has parsed it already, so mask it in place
    sys.argv[:] = [redact_text(arg) for arg in sys.argv]
    log.info("wandb: project %s, run %s, %s mode", project, run_name, mode)
    return ["wandb"], [WandbRunConfig(record)]
