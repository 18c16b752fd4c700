"""Names of run and job directories, registered as OmegaConf resolvers for conf/hydra/posttrain.yaml."""

from __future__ import annotations

import datetime
import hashlib
import re
from pathlib import Path

from omegaconf import OmegaConf

from posttrain.learning_rate import default_learning_rate

# Longest job folder name kept verbatim; longer names are cut and suffixed with a hash.
MAX_DIR_NAME = 120


def safe_name(text: str) -> str:
    """A folder-safe version of `text`: path separators and odd characters become '_'."""
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", str(text)).strip("._")
    if len(name) > MAX_DIR_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:MAX_DIR_NAME - 9]}-{digest}"
    return name


def run_dir_name(run_name, dataset, model, method, learning_rate, beta, stages=None) -> str:
    """outputs/ folder of a run: the run_name knob, else {dataset}_{model}_{method}_lr{lr}[_beta{b}]_{time} for
    a single method and {dataset}_{model}_{stage}-{stage}..._{time} for a pipeline (each stage has its own)."""
    if run_name not in (None, "", "None", "null"):
        return safe_name(run_name)
    from posttrain.registry import METHODS

    if stages:
        parts = [dataset, model, "-".join(str(name) for name in stages)]
    else:
        parts = [dataset, model, method, f"lr{learning_rate:g}" if isinstance(learning_rate, float) else f"lr{learning_rate}"]
        if method in METHODS and METHODS[method].uses_beta:
            parts.append(f"beta{beta}")
    parts.append(datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    return safe_name("_".join(str(p) for p in parts))


def job_dir_name(override_dirname: str) -> str:
    """multirun/ job folder: the job's overrides (method=dpo,dpo_beta=0.1), or 'default' when there are none.
    Values of credential-like keys (api_key=..., token=...) are masked, never written into a folder name."""
    from posttrain.redact import redact_text

    return safe_name(redact_text(override_dirname)) or "default"


def record_subdir(output_dir: str) -> str | None:
    """hydra.output_subdir: .hydra, except for a completed run, whose record a launch that trains nothing
    must not rewrite (None tells Hydra to save no copy)."""
    from posttrain.rundir import RunDir

    return None if RunDir(Path(output_dir)).is_completed() else ".hydra"


def example_file(name: str) -> str:
    """${posttrain.example:nli_train.jsonl}: a data file shipped in posttrain/data/examples/."""
    return str(Path(__file__).resolve().parent / "data" / "examples" / name)


def method_list() -> str:
    """${posttrain.methods:}: one line per registered method (the --help page)."""
    from posttrain.registry import describe_methods

    return describe_methods()


def register_resolvers() -> None:
    """Every OmegaConf resolver posttrain's configs use, registered in this one place."""
    OmegaConf.register_new_resolver("posttrain.methods", method_list, replace=True)
    OmegaConf.register_new_resolver("posttrain.example", example_file, replace=True)
    OmegaConf.register_new_resolver("posttrain.run_dir_name", run_dir_name, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("posttrain.job_dir_name", job_dir_name, replace=True)
    OmegaConf.register_new_resolver("posttrain.learning_rate", default_learning_rate, replace=True)
    OmegaConf.register_new_resolver("posttrain.record_subdir", record_subdir, replace=True)
