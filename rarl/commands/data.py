"""`rarl data`: placeholder until its issue lands."""

from __future__ import annotations

import argparse

from rarl.commands._common import not_implemented

HELP = "Inspect datasets: counts per split and question type, rendered prompts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_implemented("data")
