"""`rarl eval`: generate predictions on the configured eval datasets, score them, write results.

``rarl eval --config configs/x.yaml [eval.prompt=non_reasoning model.adapter_path=outputs/run ...]``
writes ``predictions.jsonl`` incrementally (a rerun resumes where it stopped), then ``results.json`` and
``results.md`` with rule metrics and, when ``judges:`` are configured, the LLM-judge scores.
"""

from __future__ import annotations

import argparse
import sys

from rarl.commands._common import add_config_arguments, config_from_args

HELP = "Generate predictions on benchmark splits and compute rule metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--no-judges", action="store_true", help="skip the configured LLM judges")
    parser.add_argument(
        "--overwrite", action="store_true", help="discard existing predictions.jsonl instead of resuming"
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from rarl.eval.harness import RESULTS_MD, run_evaluation

    config = config_from_args(args)
    results = run_evaluation(config, judges=not args.no_judges, overwrite=args.overwrite)
    out = Path(config.eval.output_dir)
    console = Console()
    print((out / RESULTS_MD).read_text(encoding="utf-8"))
    generation = results["generation"]
    console.print(
        f"{results['n']} items ({generation['resumed']} resumed, {generation['generated']} generated in "
        f"{generation['generate_s']:.1f}s) -> {out}/",
        markup=False,
    )
    failures = results.get("judge_failures") or {}
    for name, message in failures.items():  # no score was written for these judges: not a success
        print(f"rarl eval: error: judge {name!r}: {message}; no score written", file=sys.stderr)
    return 1 if failures else 0
