"""`rarl export`: merge a trained LoRA adapter into its base and write a standalone model directory.

``rarl export --run outputs/rarl_qwen2vl_2b --out outputs/export/rarl-2b [--results outputs/eval/rarl]``
writes the merged weights, the processor with the run's pixel budget and a model card (README.md with the
hub's metadata and the evaluation results); ``--push-to-hub USER/NAME`` uploads it (docs/training.md).
"""

from __future__ import annotations

import argparse

HELP = "Merge a LoRA adapter into its base: a standalone model directory with processor and model card"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", required=True, metavar="DIR", help="training output dir or checkpoint-N dir"
    )
    parser.add_argument("--adapter", metavar="DIR", help="the adapter to merge, when not the --run directory")
    parser.add_argument("--out", required=True, metavar="DIR", help="the model directory to write")
    parser.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="DIR",
        help="an evaluation output dir (its results.json) for the model card; repeatable (default: any "
        "results.json in the adapter dir or one folder below)",
    )
    parser.add_argument(
        "--dtype",
        choices=("auto", "bfloat16", "float16", "float32"),
        help="weights of the merged model (default: the run's model.dtype; merging runs on CPU, where auto "
        "is float32; bfloat16 halves the files)",
    )
    parser.add_argument("--name", help="the model's name in the card (default: the repo or --out)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload the directory to this hub repository")
    parser.add_argument("--private", action="store_true", help="create the hub repository as private")


def run(args: argparse.Namespace) -> int:
    from rarl.export.run import run_export

    summary = run_export(
        args.run,
        args.out,
        adapter=args.adapter,
        results=args.results,
        dtype=args.dtype,
        name=args.name,
        overwrite=args.overwrite,
        push_to_hub=args.push_to_hub,
        private=args.private,
    )
    print(
        f"merged {summary['adapter']} into {summary['base_model']} -> {summary['out']}/ "
        f"({summary['eval_results']} evaluation results in README.md from {len(summary['results'])} run(s))"
    )
    if summary.get("pushed"):
        print(f"pushed to {summary['pushed']}")
    return 0
