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
    from hydra.core.hydra_config import HydraConfig

    from posttrain.compose import stage_configs
    from posttrain.run.job import run_job

    job = HydraConfig.get()
    return run_job(cfg, stage_configs(cfg, list(job.overrides.task), job.job.config_name))


def hydra_args_parser():
    """Hydra's own command-line parser (a private API, hydra._internal), else one that reads the same flags."""
    try:
        from hydra._internal.utils import get_args_parser

        return get_args_parser()
    except ImportError:
        import argparse

        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("overrides", nargs="*")
        for flags in (("--help", "-h"), ("--hydra-help",), ("--resolve",), ("--run", "-r"), ("--multirun", "-m"),
                      ("--shell-completion", "-sc")):
            parser.add_argument(*flags, action="store_true")
        parser.add_argument("--cfg", "-c", choices=["job", "hydra", "all"])
        parser.add_argument("--info", "-i", nargs="?", const="all")
        for flags in (("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn"),
                      ("--config-dir", "-cd"), ("--experimental-rerun",)):
            parser.add_argument(*flags)
        return parser


def main() -> None:
    args, _ = hydra_args_parser().parse_known_args(sys.argv[1:])
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
                from posttrain.plan import print_plan  # imports torch: only once the command will run

                if print_plan(overrides, config_name, args.multirun):
                    return
        except PosttrainError as error:
            fail(error)
    hydra_app()  # a sweep with a job that did not complete exits 1 from its summary (sweep.SweepSummary)
