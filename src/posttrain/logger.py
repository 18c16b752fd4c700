"""conf/logger/: the experiment tracker. W&B runs through transformers' own WandbCallback; posttrain only
chooses its mode (WANDB_MODE as the user set it, else offline without an API key), puts its files in the run
directory and adds the composed config with credentials masked.

A tracker never costs a run: online mode starts the W&B run before training (the callback then reuses it),
and a server that cannot be reached or a key it rejects falls back to offline logging in the run directory
with one warning line (`wandb sync` uploads it later)."""

from __future__ import annotations

import logging
import netrc
import os
import socket
import sys
import warnings
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

from posttrain.distributed import is_main_process
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
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # eval=lm_eval: the harness's notes on every call


def wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _server_reachable(timeout: float = 5.0) -> str | None:
    """None when the W&B server (WANDB_BASE_URL, else api.wandb.ai) accepts a connection, else why not."""
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
        return None
    except OSError as err:
        return f"cannot reach {url.hostname}:{port} ({err.strerror or type(err).__name__})"


def _start_wandb(project: str, entity, run_name: str, run_dir: RunDir) -> str:
    """Start the W&B run online, or offline when the server is unreachable or rejects the key; returns the
    mode it runs in. transformers' WandbCallback finds the run started and logs to it."""
    import wandb

    reason = _server_reachable()
    if reason is None:
        try:
            wandb.init(project=project, entity=entity or None, name=run_name, dir=str(run_dir.path), mode="online")
            return "online"
        except Exception as err:  # wandb's CommError, AuthenticationError, UsageError, timeouts ...
            lines = str(err).strip().splitlines()
            reason = f"{type(err).__name__}: {lines[0] if lines else ''}"
    os.environ["WANDB_MODE"] = "offline"
    wandb.init(project=project, entity=entity or None, name=run_name, dir=str(run_dir.path), mode="offline")
    log.warning("wandb: online logging failed (%s); logging offline in %s/wandb instead (upload it later with "
                "wandb sync %s/wandb/offline-run-*)", redact_text(reason), run_dir.path, run_dir.path)
    return "offline"


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
    if mode == "auto":  # WANDB_MODE as the user exported it, else online only with a key
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_key_configured() else "offline")
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
    if mode == "online" and is_main_process():
        mode = _start_wandb(project, entity, run_name, run_dir)
    log.info("wandb: project %s, run %s, %s mode", project, run_name, mode)
    return ["wandb"], [WandbRunConfig(record)]
