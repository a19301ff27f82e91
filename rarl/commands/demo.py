"""`rarl demo`: offline run on CPU — tiny Qwen2-VL, synthetic data, format warm-up -> GRPO + LoRA -> eval.

Every stage is a preset under ``configs/demo/`` run by ``rarl train``'s and ``rarl eval``'s own functions;
the printed table is the report's paired table (the GRPO arm against the base it started from).
``--seeds N`` repeats it and adds the spread; ``--compare`` runs the paper's comparison in miniature
(SFT, RL w/ LoRA, RARL; in distribution and under a held-out phrasing; three prompts; against SFT).
See README "The offline demo".
"""

from __future__ import annotations

import argparse

HELP = "Offline demo: tiny model, synthetic data, format warm-up -> GRPO with LoRA -> paired eval"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="outputs/demo", help="where the runs, evals and reports go")
    parser.add_argument("--seed", type=int, default=0, help="seed of model, data and training")
    parser.add_argument("--seeds", type=int, default=1, help="repeat with N consecutive seeds (default 1)")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="the paper's comparison in miniature: SFT, RL w/ LoRA and RARL from the same base, each "
        "evaluated in distribution and under a held-out phrasing with three prompts (slower)",
    )
    parser.add_argument("--warmup-steps", type=int, default=None, help="format warm-up steps (preset)")
    parser.add_argument(
        "--arm-steps",
        type=int,
        default=None,
        help="steps of each trained arm: RARL, SFT, RL w/ LoRA (preset)",
    )
    parser.add_argument("--eval-samples", type=int, default=None, help="held-out items per set (preset)")
    parser.add_argument(
        "--task",
        default=None,
        help="the synthetic question kind every stage asks instead of the presets' own (modality), e.g. "
        "body_shape: a task the recipe was not built on",
    )
    parser.add_argument("--config-dir", default=None, help="folder of the demo presets (configs/demo)")
    parser.add_argument("--width", type=int, default=64, help="hidden size of the tiny language model")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads for torch (1: bit-reproducible results)"
    )


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo never needs the network
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from pathlib import Path

    from rarl.demo import (
        RL_STAGE,
        DemoOptions,
        demo_table,
        mean_reward_trend,
        run_demo_seeds,
        spread_table,
        task_overrides,
        write_reports,
    )
    from rarl.errors import UserError

    for name in ("seeds", "warmup_steps", "arm_steps", "eval_samples", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.width < 16 or args.width % 16:
        raise UserError(f"--width must be a multiple of 16 (>= 16), got {args.width}")
    overrides: dict[str, list[str]] = {}
    if args.warmup_steps:
        overrides["format_warmup"] = [f"train.sft.max_steps={args.warmup_steps}"]
    if args.arm_steps:
        for arm, method in (("sft", "sft"), ("rl_lora", "grpo"), ("rarl", "grpo")):
            overrides[arm] = [f"train.{method}.max_steps={args.arm_steps}"]
    if args.eval_samples:
        overrides["eval"] = [f"data.eval.{i}.num_samples={args.eval_samples}" for i in range(2)]
    options = DemoOptions(
        output_dir=args.output_dir,
        seed=args.seed,
        compare=args.compare,
        width=args.width,
        threads=args.threads,
        overrides=overrides,
        **({"config_dir": args.config_dir} if args.config_dir else {}),
    )
    if args.task:
        options.overrides = task_overrides(options, args.task)
    summaries = run_demo_seeds(options, args.seeds)
    print(demo_table(summaries).markdown())
    if len(summaries) > 1:
        print(spread_table(summaries).markdown())
    for summary in summaries:
        for arm in ("rl_lora", RL_STAGE) if summary["compare"] else (RL_STAGE,):
            trend = mean_reward_trend(Path(summary["train_runs"][arm]) / "metrics.jsonl")
            if trend:
                print(
                    f"seed {summary['seed']} {arm}: mean GRPO reward {trend[0]:.3f} (first 50 steps) -> "
                    f"{trend[1]:.3f} (last 50)"
                )
        reports = write_reports(summary)
        timings = summary["timings_s"]
        print(
            f"seed {summary['seed']}: {timings['cpu_s']:.0f}s CPU, {timings['wall_s']:.0f}s wall; "
            f"all tables: {', '.join(map(str, reports))}"
        )
    return 0
