"""`rarl report`: placeholder until its issue lands."""

from __future__ import annotations

import argparse

from rarl.commands._common import not_implemented

HELP = "Build paper-style tables, judge agreement and plots from results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_implemented("report")
