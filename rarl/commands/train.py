"""`rarl train`: GRPO (+LoRA) or SFT from a run config.

``rarl train --config configs/rarl_qwen2vl_2b.yaml [train.grpo.max_steps=200 lora.r=16 ...] [--resume]``
writes checkpoints every ``train.save_steps`` steps, ``metrics.jsonl``, TensorBoard events under
``runs/``, ``resolved_config.yaml`` and the final adapter (or full model) into the run's ``output_dir``.
Several GPUs: ``accelerate launch [--config_file configs/accelerate/ddp.yaml] -m rarl train --config …``.
"""

from __future__ import annotations

import argparse
import logging
import os

from rarl.commands._common import add_config_arguments, config_from_args

HELP = "Fine-tune with GRPO (+LoRA) or SFT from a run config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint-* in the run's output_dir"
    )
    parser.add_argument(
        "--resume-from", metavar="CHECKPOINT", help="continue from this checkpoint directory instead"
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from rarl.train.run import run_training

    if os.environ.get("RANK", "0") != "0":  # accelerate launch: the other processes log warnings only
        logging.getLogger().setLevel(logging.WARNING)

    config = config_from_args(args)
    try:
        summary = run_training(config, resume=args.resume_from or args.resume)
    except KeyboardInterrupt:
        print(
            f"rarl train: interrupted; to continue from the last checkpoint in {config.train.output_dir}, "
            "rerun the same command with --resume",
            file=sys.stderr,
        )
        return 130
    if summary["main_process"]:  # one line per run, not one per process under accelerate launch
        print(summary_line(summary))
    return 0


def summary_line(summary: dict) -> str:
    """What ``rarl train`` prints when it is done."""
    resumed = f" (resumed from {summary['resumed_from']})" if summary["resumed_from"] else ""
    return (
        f"{summary['method']}: {summary['global_step']} steps in {summary['runtime_s']:.1f}s{resumed}; "
        f"final model and metrics.jsonl in {summary['output_dir']}/"
    )
