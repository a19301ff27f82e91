"""`rarl report`: paper-style tables (markdown + CSV), judge agreement and PNG plots.

``rarl report outputs/eval_base outputs/eval_rarl --labels Base RARL --train-run outputs/run
--human ratings.sqlite --out outputs/report``
"""

from __future__ import annotations

import argparse

HELP = "Build paper-style tables, judge agreement and plots from results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", metavar="EVAL_DIR", help="eval output directories (with results.json)"
    )
    parser.add_argument(
        "--labels", nargs="+", help="one column label per EVAL_DIR (default: directory names)"
    )
    parser.add_argument(
        "--train-run",
        action="append",
        default=[],
        metavar="DIR",
        help="training output dir (metrics.jsonl or trainer_state.json) to plot reward curves; repeatable",
    )
    parser.add_argument(
        "--human", metavar="RATINGS_DB", help="ratings.sqlite from `rarl review` (Human columns)"
    )
    parser.add_argument("--out", default="outputs/report", help="output directory (default: outputs/report)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rarl.report.tables import build_report

    written = build_report(
        args.runs, args.out, labels=args.labels, train_runs=args.train_run, human_db=args.human
    )
    console = Console()
    print(written["report.md"].read_text(encoding="utf-8"))
    console.print("wrote " + ", ".join(str(path) for path in written.values()), markup=False)
    return 0
