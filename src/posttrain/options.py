"""Named options of the config groups (conf/<group>/<name>.yaml), loaded by Hydra's own config loader:
an option's defaults list (the base it extends, e.g. dataset/nli on dataset/local, a hub model on
/hub_model) is applied exactly as when the option is picked on the command line.

For the places that refer to an option by name inside a config: a mixture source (`dataset: nli`) and the
pairs judge (`judge.model=smollm2-135m`). Inside a running Hydra app the app's search path is used (so a
user's --config-dir options are found too); elsewhere posttrain's shipped configs.
"""

from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from posttrain.errors import PosttrainError

CONFIG_MODULE = "posttrain.conf"
TRAIN_CONFIG = "train"


def _in_hydra(load):
    if GlobalHydra.instance().is_initialized():
        return load()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return load()


def group_options(group: str) -> list[str]:
    """The option names of a config group (dataset -> local, nli, tictactoe, ...)."""
    return _in_hydra(lambda: sorted(GlobalHydra.instance().config_loader().get_group_options(group)))


def group_option(group: str, name: str, what: str, fix: str = "") -> DictConfig:
    """conf/<group>/<name>.yaml with its defaults list applied (a plain, unresolved, non-struct config).
    An unknown name fails with `what` (e.g. "mixture source names unknown dataset") and the options."""

    def load() -> DictConfig:
        options = sorted(GlobalHydra.instance().config_loader().get_group_options(group))
        if name not in options:
            raise PosttrainError(f"{what} '{name}'", f"choose one of: {', '.join(options)}{fix}")
        # composed inside the run config, as a command line picks it (an option may choose another group's
        # option too: dataset=tictactoe picks eval=tictactoe)
        composed = compose(config_name=TRAIN_CONFIG, overrides=[f"{group}={name}", "~experiment"])
        return OmegaConf.create(OmegaConf.to_container(composed[group], resolve=False))

    return _in_hydra(load)
