"""`rarl demo`: offline run on CPU — tiny Qwen2-VL, synthetic data, SFT warm-up -> GRPO + LoRA -> eval.

Prints held-out accuracy per stage with 95% intervals (against chance), the paired GRPO-vs-warm-up
difference with its interval and McNemar p-value, the GRPO reward trend and the adapter check, and writes
``outputs/demo/results.json``; ``--seeds N`` repeats it and reports mean ± SD. See README "The offline demo".
"""

from __future__ import annotations

import argparse

HELP = "Offline demo: tiny model, synthetic data, SFT warm-up -> GRPO with LoRA -> eval with CIs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="outputs/demo", help="where results.json and runs go")
    parser.add_argument("--seed", type=int, default=0, help="seed of model, data and training")
    parser.add_argument("--sft-steps", type=int, default=None, help="SFT warm-up steps (default: tuned)")
    parser.add_argument("--grpo-steps", type=int, default=None, help="GRPO steps (default: tuned)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat with N consecutive seeds and report mean ± SD (default 1)",
    )
    parser.add_argument(
        "--width", type=int, default=None, help="hidden size of the tiny language model (default 64)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for torch (1: bit-reproducible results)"
    )


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never needs the network
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from rarl.demo import DemoSettings, results_table, run_demo, run_demo_seeds, seeds_table
    from rarl.errors import UserError

    settings = DemoSettings(output_dir=args.output_dir, seed=args.seed, threads=args.threads)
    for name, stage in (("sft_steps", settings.sft_train), ("grpo_steps", settings.grpo_train)):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
            stage["max_steps"] = value
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.width is not None:
        if args.width < 16 or args.width % 16:
            raise UserError(f"--width must be a multiple of 16 (>= 16), got {args.width}")
        settings.width = args.width
    if args.seeds > 1:
        summary = run_demo_seeds(settings, args.seeds)
        for run in summary["runs"]:
            print(f"seed {run['setup']['seed']}:\n{results_table(run)}\n")
        print(seeds_table(summary))
        print(f"results in {args.output_dir}/results.json (per seed: {args.output_dir}/seed<k>/)")
        return 0
    results = run_demo(settings)
    print(results_table(results))
    learned = results["learned"]
    verdict = (
        "learned"
        if all(learned.values())
        else "did NOT clearly learn: " + ", ".join(name for name, ok in learned.items() if not ok)
    )
    timings = results["timings_s"]
    print(
        f"{verdict}; {timings['total_s']:.0f}s total ({timings['cpu_s']:.0f}s CPU); "
        f"results in {args.output_dir}/results.json"
    )
    return 0
