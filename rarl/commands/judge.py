"""`rarl judge`: (re)score an existing predictions.jsonl with the judges of a config.

``rarl judge --config configs/x.yaml [--predictions outputs/eval/predictions.jsonl]`` writes
``judgements/<judge>.jsonl`` beside the predictions and merges the judges into ``results.json``. Replies
are cached (``cache_path``), so rerunning after a failure only asks for what is missing.
"""

from __future__ import annotations

import argparse

from rarl.commands._common import add_config_arguments, config_from_args

HELP = "Score predictions with one or more LLM judges (OpenAI-compatible endpoints)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--predictions", help="predictions.jsonl to judge (default: <eval.output_dir>/predictions.jsonl)"
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rarl.eval.harness import rejudge

    config = config_from_args(args)
    results = rejudge(config, args.predictions)
    console = Console()
    for name, info in results["judges"].items():
        stats, overall = info["stats"], info["summary"]["overall"]
        console.print(
            f"{name} ({info['model']}): Reasoning {overall['reasoning']:.2f}%  "
            f"Final {overall['final']:.2f}%  "
            f"n={stats['n']} ok={stats['ok']} parse_errors={stats['parse_errors']} "
            f"api_errors={stats['api_errors']} cached={stats['cache_hits']} requests={stats['requests']}",
            markup=False,
        )
    return 0
