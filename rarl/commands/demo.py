"""`rarl demo`: placeholder until its issue lands."""

from __future__ import annotations

import argparse

from rarl.commands._common import not_implemented

HELP = "Offline end-to-end demo: tiny model, synthetic data, SFT -> GRPO -> eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_implemented("demo")
