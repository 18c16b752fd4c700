"""The posttrain command: `python -m posttrain [overrides]` and the `posttrain` console script.

The front door (posttrain.compose) turns the command line into the one Hydra composes and checks every
config it will run (each value of a sweep, each stage of a pipeline) before anything launches: a problem
ends the command with one line and exit status 1 (HYDRA_FULL_ERROR=1 shows the traceback instead).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from posttrain.compose import CONFIG_NAME, check_command_line, command_overrides, print_pipeline_configs, rewrite_argv
from posttrain.errors import PosttrainError, fail


@hydra.main(version_base="1.3", config_path="pkg://posttrain.conf", config_name=CONFIG_NAME)
def hydra_app(cfg: DictConfig) -> float | None:
    from posttrain.run.job import run_job

    return run_job(cfg)


def main() -> None:
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(sys.argv[1:])
    config_name = args.config_name or CONFIG_NAME
    if not (args.shell_completion or args.help or args.hydra_help):
        try:
            overrides = command_overrides(args.overrides, config_name)
            sys.argv[1:] = rewrite_argv(sys.argv[1:], args.overrides, overrides)
            if args.cfg == "job" and not args.multirun:
                if print_pipeline_configs(overrides, config_name, resolve=args.resolve):
                    return
            elif not (args.cfg or args.info):
                check_command_line(overrides, config_name, args.multirun)
        except PosttrainError as error:
            fail(error)
    hydra_app()
    from posttrain.sweep import unfinished_jobs

    if unfinished_jobs:
        sys.exit(1)
