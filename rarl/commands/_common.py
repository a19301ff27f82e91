"""Arguments and helpers shared by subcommands that take a run config."""

from __future__ import annotations

import argparse

from rarl.config import RunConfig, load_config


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--config FILE`` plus any number of ``key.path=value`` overrides."""
    parser.add_argument("--config", "-c", required=required, help="YAML run config (see configs/)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. train.grpo.beta=0.02 lora.r=16",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return load_config(args.config, list(args.overrides or []))
