"""`rarl bench NAME`: dispatch to the benchmark modules in :mod:`rarl.bench`."""

from __future__ import annotations

import argparse
import importlib

HELP = (
    "Benchmarks: GRPO step cost (grpo), reward throughput (rewards), predicted step memory (memory); "
    "results as JSON + markdown"
)

BENCHMARKS: dict[str, str] = {
    "grpo": "rarl.bench.grpo",
    "rewards": "rarl.bench.rewards",
    "memory": "rarl.bench.memory",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    return int(args._bench_run(args) or 0)
