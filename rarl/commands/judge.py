"""`rarl judge`: placeholder until its issue lands."""

from __future__ import annotations

import argparse

from rarl.commands._common import not_implemented

HELP = "Score predictions with one or more LLM judges (OpenAI-compatible endpoints)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return not_implemented("judge")
