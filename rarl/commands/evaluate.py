"""`rarl eval`: generate predictions on the configured eval datasets, score them, write results.

``rarl eval --config configs/x.yaml [eval.prompt=non_reasoning model.adapter_path=outputs/run ...]``
writes ``predictions.jsonl`` incrementally (a rerun with the same settings and items resumes where it
stopped; other settings or changed items are refused), then ``results.json`` and ``results.md`` with rule
metrics and, when ``judges:`` are configured, the LLM-judge scores. ``--checkpoints all|last|best``
evaluates the checkpoints of a training run instead (:mod:`rarl.eval.checkpoints`). Under
``accelerate launch -m rarl eval ...`` the items are shared between the processes.
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
        "--overwrite",
        action="store_true",
        help="discard this output directory's predictions, judgements and results instead of resuming",
    )
    parser.add_argument(
        "--checkpoints",
        choices=("all", "last", "best"),
        help="evaluate a training run's checkpoint-N dirs: every one (curve), the newest, or every one "
        "and choose the best on a validation split (never test)",
    )
    parser.add_argument(
        "--run",
        metavar="DIR",
        help="training run whose checkpoints to evaluate (default: the run's output_dir)",
    )
    parser.add_argument(
        "--image-control",
        choices=("blank", "shuffled"),
        help="replace every item's image (blank: uniform mid-grey of its size; shuffled: another item's, "
        "seeded by eval.image_control_seed) to measure how much accuracy needs the image; same as "
        "eval.image_control=..., into its own eval.output_dir",
    )
    parser.add_argument(
        "--select-metric",
        default="rarl.accuracy",
        metavar="NAME",
        help="rule metric that --checkpoints best maximises, a path into the overall metrics such as "
        "rarl.accuracy, closed.rarl.accuracy, open.rarl.token_f1, official.bleu, llava_med.open_recall "
        "(default: rarl.accuracy)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.console import Console

    from rarl.errors import UserError
    from rarl.eval.harness import RESULTS_MD, run_evaluation
    from rarl.report.tables import write_results_markdown

    if args.image_control:  # one more override: parsed and checked with the others, at the boundary
        args.overrides = [*(args.overrides or []), f"eval.image_control={args.image_control}"]
    config = config_from_args(args)
    if args.run and not args.checkpoints:
        raise UserError("--run names a training run for --checkpoints; add --checkpoints all|last|best")
    if args.checkpoints and config.eval.backend == "openai":
        raise UserError(
            "--checkpoints evaluates a training run's checkpoints in-process; it needs eval.backend: "
            "transformers (a served model is one model: evaluate it without --checkpoints)"
        )
    try:
        if args.checkpoints:
            from rarl.eval.checkpoints import evaluate_checkpoints

            results = evaluate_checkpoints(
                config,
                args.run or config.train.output_dir,
                args.checkpoints,
                metric=args.select_metric,
                judges=not args.no_judges,
                overwrite=args.overwrite,
            )
        else:
            results = run_evaluation(config, judges=not args.no_judges, overwrite=args.overwrite)
    except KeyboardInterrupt:
        print(
            f"rarl eval: interrupted; finished predictions are kept in {config.eval.output_dir}/ — "
            "rerun the same command (without --overwrite) to resume",
            file=sys.stderr,
        )
        return 130
    if results is None:  # a non-main process of a sharded run: the main one reports
        return 0
    out = Path(config.eval.output_dir)
    selection = results.checkpoint_selection
    for row in selection.checkpoints if selection else ():
        if row.output_dir:
            write_results_markdown(row.output_dir)
    write_results_markdown(out)
    console = Console()
    print((out / RESULTS_MD).read_text(encoding="utf-8"))
    if selection:
        for row in selection.checkpoints:
            mark = "  <- chosen" if row.checkpoint == selection.chosen else ""
            value = "n/a" if row.value is None else f"{row.value:.4f}"
            print(f"{row.checkpoint}: {selection.metric} {value} (n={row.n}){mark}")
        print(f"curve: {out}/checkpoints.png, {out}/checkpoints.csv")
        return 0
    generation = results.generation
    console.print(
        f"{results.n} items ({generation['resumed']} resumed, {generation['generated']} generated in "
        f"{generation['generate_s']:.1f}s) -> {out}/",
        markup=False,
    )
    failures = results.judge_failures
    for name, message in failures.items():  # no score was written for these judges: not a success
        print(f"rarl eval: error: judge {name!r}: {message}; no score written", file=sys.stderr)
    return 1 if failures else 0
