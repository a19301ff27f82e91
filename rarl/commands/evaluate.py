"""`rarl eval`: generate predictions on the configured eval datasets, score them, write results.

``rarl eval --config configs/x.yaml [eval.prompt=non_reasoning model.adapter_path=outputs/run ...]``
writes ``predictions.jsonl`` incrementally (a rerun resumes where it stopped), then ``results.json`` and
``results.md`` with rule metrics and, when ``judges:`` are configured, the LLM-judge scores.
"""

from __future__ import annotations

import argparse

from rarl.commands._common import add_config_arguments, config_from_args

HELP = "Generate predictions on benchmark splits and compute rule metrics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--no-judges", action="store_true", help="skip the configured LLM judges")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="discard this output directory's predictions, judgements and results instead of resuming",
    )


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from rich.console import Console

    from rarl.eval.harness import RESULTS_MD, run_evaluation

    config = config_from_args(args)
    try:
        results = run_evaluation(config, judges=not args.no_judges, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print(
            f"rarl eval: interrupted; finished predictions are kept in {config.eval.output_dir}/ — "
            "rerun the same command (without --overwrite) to resume",
            file=sys.stderr,
        )
        return 130
    if not results:  # a non-main process of a sharded run: the main one reports
        return 0
    out = Path(config.eval.output_dir)
    console = Console()
    print((out / RESULTS_MD).read_text(encoding="utf-8"))
    generation = results["generation"]
    console.print(
        f"{results['n']} items ({generation['resumed']} resumed, {generation['generated']} generated in "
        f"{generation['generate_s']:.1f}s) -> {out}/",
        markup=False,
    )
    return 0
