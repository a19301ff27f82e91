"""`rarl judge`: (re)score an existing predictions.jsonl with the judges of a config.

``rarl judge --config configs/x.yaml [--predictions outputs/eval/predictions.jsonl]`` writes
``judgements/<judge>.jsonl`` beside the predictions and merges the judges into ``results.json``. Replies
are cached (``cache_path``), so rerunning after a failure only asks for what is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rarl.commands._common import add_config_arguments, config_from_args

HELP = "Score predictions with one or more LLM judges (OpenAI-compatible endpoints)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--predictions", help="predictions.jsonl to judge (default: <eval.output_dir>/predictions.jsonl)"
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="ask again for items whose cached judge reply was unreadable (API errors are always re-asked)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rarl.eval.harness import rejudge
    from rarl.report.tables import write_results_markdown
    from rarl.schema.results import JudgeBlock
    from rarl.schema.rundir import PREDICTIONS_FILE, RESULTS_FILE

    config = config_from_args(args)
    results = rejudge(config, args.predictions, retry_failed=args.retry_failed)
    predictions = Path(args.predictions or Path(config.eval.output_dir) / PREDICTIONS_FILE)
    write_results_markdown(predictions.parent)
    console = Console()
    typed = results
    for name, info in typed.judges.items():
        if name not in {judge.name for judge in config.judges}:
            continue  # a judge of an earlier run, kept in results.json
        stats, overall = info.stats, info.overall or JudgeBlock()
        console.print(
            f"{name} ({info.model}): Reasoning {_percent(overall.reasoning)}  "
            f"Final {_percent(overall.final)}  "
            f"n={stats.n} ok={stats.ok} parse_errors={stats.parse_errors} "
            f"api_errors={stats.api_errors} cached={stats.cache_hits} requests={stats.requests}",
            markup=False,
        )
        if stats.parse_errors:
            console.print(
                f"{name}: {stats.parse_errors} unreadable replies are cached; --retry-failed asks again",
                markup=False,
            )
    # Only this config's judges decide the exit code: an earlier run's judge that is no longer configured
    # keeps its entry in results.json (scores or failure) and is named in one line, never an error.
    configured = {judge.name for judge in config.judges}
    failures = {name: message for name, message in typed.judge_failures.items() if name in configured}
    earlier = sorted((set(typed.judges) | set(typed.judge_failures)) - configured)
    if earlier:
        print(
            f"rarl judge: note: kept the earlier results of {', '.join(map(repr, earlier))} in "
            f"{predictions.parent / RESULTS_FILE} (not in this config; not re-judged)",
            file=sys.stderr,
        )
    for name, message in failures.items():
        print(f"rarl judge: error: judge {name!r}: {message}; no score written", file=sys.stderr)
    return 1 if failures else 0


def _percent(value: float | None) -> str:
    """A judge's rate as printed; no successful judgement is "n/a", never 0 %."""
    return "n/a" if value is None else f"{value:.2f}%"
