"""Command-line settings of `rarl bench grpo`: its flags, their checks, the command reproducing a report."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from rarl.bench.grpo.configs import ARCHES, CONFIGS, DEFAULT_CONFIGS
from rarl.errors import UserError

# --------------------------------------------------------------------------------------------------
# CLI


@dataclass(frozen=True)
class BenchSettings:
    """Every setting a benchmark run shares across its configurations, checked once from the flags.

    Why a frozen dataclass: the builders, the runner and the report all read the same values, so a typo in
    a field name fails at once (not as a ``KeyError`` deep in a long GPU run) and nothing can change a
    setting half-way through. Field order is the order of the JSON report's ``settings`` (``asdict``).
    Defaults are the CLI's defaults, except ``device``, which the CLI resolves from the machine (``cpu``
    here, so a settings object built in code never reaches for a GPU by surprise).
    """

    arch: str = "tiny"
    device: str = "cpu"
    num_generations: int = 8
    max_completion_length: int = 512
    image_size: int = 448
    steps: int = 3
    warmup_steps: int = 1
    rewards: tuple[str, ...] = ("format", "length", "accuracy", "reasoning")
    peak_flops: float | None = None  # FLOP/s (the flag is in TFLOP/s)
    peak_bandwidth: float | None = None  # bytes/s (the flag is in GB/s)
    seed: int = 0
    threads: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> BenchSettings:
        """Check the flags (one-line ``UserError`` naming the flag) and resolve the device and units."""
        import torch

        from rarl.models import default_device

        device = args.device or default_device()
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu")
        for flag, value, low in [
            ("--num-generations", args.num_generations, 2),
            ("--max-completion-length", args.max_completion_length, 1),
            ("--image-size", args.image_size, 28),
            ("--steps", args.steps, 1),
            ("--warmup-steps", args.warmup_steps, 0),
        ]:
            if value < low:
                raise UserError(f"{flag} must be >= {low}, got {value}")
        if args.threads is not None and args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        rewards = tuple(r.strip() for r in args.rewards.split(",") if r.strip())
        from rarl.rewards import REWARD_FUNCTIONS

        unknown = [r for r in rewards if r not in REWARD_FUNCTIONS]
        if unknown or not rewards:
            raise UserError(
                f"--rewards: unknown reward(s) {unknown}; valid options: {', '.join(REWARD_FUNCTIONS)}"
            )
        return cls(
            arch=args.arch,
            device=device,
            num_generations=args.num_generations,
            max_completion_length=args.max_completion_length,
            image_size=args.image_size,
            steps=args.steps,
            warmup_steps=args.warmup_steps,
            rewards=rewards,
            peak_flops=args.peak_tflops * 1e12 if args.peak_tflops else None,
            peak_bandwidth=args.peak_bandwidth_gbs * 1e9 if args.peak_bandwidth_gbs else None,
            seed=args.seed,
            threads=args.threads,
        )


def command_line(settings: BenchSettings, names: list[str], out: Path) -> str:
    """The full command that reproduces a report (every setting spelled out, defaults included)."""
    parts = [
        f"rarl bench grpo --arch {settings.arch} --device {settings.device}",
        f"--configs {','.join(names)}",
        f"--num-generations {settings.num_generations}",
        f"--max-completion-length {settings.max_completion_length}",
        f"--image-size {settings.image_size} --steps {settings.steps}",
        f"--warmup-steps {settings.warmup_steps} --rewards {','.join(settings.rewards)}",
        f"--seed {settings.seed} --out {out}",
    ]
    if settings.threads:
        parts.append(f"--threads {settings.threads}")
    if settings.peak_flops:
        parts.append(f"--peak-tflops {settings.peak_flops / 1e12:g}")
    if settings.peak_bandwidth:
        parts.append(f"--peak-bandwidth-gbs {settings.peak_bandwidth / 1e9:g}")
    return " ".join(parts)


def _config_names(text: str | None, device: str) -> list[str]:
    if not text:
        return list(DEFAULT_CONFIGS[device])
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        raise UserError(f"--configs: unknown configuration(s) {unknown}; valid options: {', '.join(CONFIGS)}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=ARCHES, default="tiny", help="model architecture (random weights)")
    parser.add_argument(
        "--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available"
    )
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated configurations ({', '.join(CONFIGS)}); default: a set per device",
    )
    parser.add_argument(
        "--num-generations", type=int, default=8, help="G: completions per prompt (default 8)"
    )
    parser.add_argument(
        "--max-completion-length", type=int, default=512, help="L: every completion is exactly L tokens"
    )
    parser.add_argument(
        "--image-size", type=int, default=448, help="square image side in pixels (default 448)"
    )
    parser.add_argument(
        "--steps", type=int, default=3, help="measured GRPO steps per configuration (default 3)"
    )
    parser.add_argument("--warmup-steps", type=int, default=1, help="unmeasured steps first (default 1)")
    parser.add_argument(
        "--rewards",
        default="format,length,accuracy,reasoning",
        help="reward functions (default: all four, BERTScore included, as in training)",
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="peak FLOP/s for MFU (default: GPU table)"
    )
    parser.add_argument(
        "--peak-bandwidth-gbs", type=float, default=None, help="peak memory GB/s for the rollout bound"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is steadier on a busy shared CPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="outputs/bench/grpo.json", help="JSON result path (.md written beside)"
    )
