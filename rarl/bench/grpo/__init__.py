"""`rarl bench grpo`: the cost of one GRPO step, split into its parts, for several training setups.

Why: the goal is RARL on Qwen2-VL-2B on a consumer GPU (< 16 GB) with rollouts near the memory-bandwidth
limit. Speed and memory depend on the architecture, not the weights, so the model is built from the real
Qwen2-VL-2B-Instruct configuration with random weights and the real tokenizer and processor
(``--arch qwen2-vl-2b``) or is the tiny offline Qwen2-VL (``--arch tiny``, for CPU and tests). Random
weights would emit EOS at random, so every completion is forced to exactly ``--max-completion-length``
tokens (``min_new_tokens`` = ``max_new_tokens``) and the generated lengths are checked.

Each configuration (TRL defaults, our preset, gradient checkpointing on/off, LoRA vs full, SDPA vs eager,
static KV cache, fp32 vs bf16, 4-bit QLoRA, flash-attention) trains ``--warmup-steps + --steps`` real
``trl.GRPOTrainer`` steps on synthetic medical-style samples with the real rewards. The trainer's own methods
are timed in place (nothing is re-implemented):

- generation: ``GRPOTrainer._generate`` (prompt tokenisation, vision encoder, prefill + decode)
- reward: ``GRPOTrainer._calculate_rewards`` (the four rewards; BERTScore on open answers/reasoning)
- logprob: the rest of ``_generate_and_score_completions`` (reference-model log-probs when beta > 0,
  padding, advantages)
- forward_backward: ``training_step`` minus the generation batch preparation (policy forward + backward)
- optimizer: ``optimizer.step`` (between the ``on_pre_optimizer_step`` and ``on_optimizer_step`` callbacks)
- other: the rest of the optimizer step (gradient clipping, ``zero_grad``, scheduler, callbacks)

Outputs: ``--out`` (default ``outputs/bench/grpo.json``) and a markdown table beside it (``.md``), rewritten
after every configuration so an interrupted run keeps what it measured.

The package's modules follow those parts: :mod:`.configs` (the setups), :mod:`.settings` (the flags),
:mod:`.environment`, :mod:`.setup` (model, data, trainer), :mod:`.timing`, :mod:`.flops`, :mod:`.runner`
(one setup end to end) and :mod:`.output` (JSON + markdown).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rarl.bench.grpo.configs import ARCHES, CONFIGS, DEFAULT_CONFIGS, BenchConfig
from rarl.bench.grpo.environment import GPU_PEAKS, environment, peaks, unavailable_reason
from rarl.bench.grpo.flops import FORMULAS, image_patches, parameter_counts, step_flops, weight_sizes
from rarl.bench.grpo.output import markdown, markdown_line, write_report
from rarl.bench.grpo.runner import run_config, summarise
from rarl.bench.grpo.settings import BenchSettings, _config_names, add_arguments, command_line
from rarl.bench.grpo.setup import (
    arch_for_tokenizer,
    bench_run_config,
    build_model,
    build_processor,
    build_trainer,
    effective_beta,
    hub_processor_dir,
    preload_rewards,
    tiny_model_dir,
    train_samples,
)
from rarl.bench.grpo.timing import PHASES, PeakRSS, StepTimer

HELP = "GRPO step cost: seconds split into generation/reward/forward-backward, tokens/s, peak memory, MFU"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    settings = BenchSettings.from_args(args)
    names = _config_names(args.configs, settings.device)
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    out = Path(args.out)
    report: dict[str, Any] = {
        "command": command_line(settings, names, out),
        "environment": environment(settings.device),
        "settings": asdict(settings),
        "formulas": FORMULAS,
        "results": [],
    }
    preload_rewards(settings)
    for index, name in enumerate(names, 1):
        console.print(f"[bold]\\[{index}/{len(names)}][/bold] {name}: {CONFIGS[name].description}")
        row = run_config(CONFIGS[name], settings)
        report["results"].append(row)
        console.print(markdown_line(row))
        write_report(report, out)
    console.print(f"wrote {out} and {out.with_suffix('.md')}")
    print(out.with_suffix(".md").read_text(encoding="utf-8"))
    return 0 if all(r["status"] in ("ok", "unavailable") for r in report["results"]) else 1


__all__ = [
    "ARCHES",
    "CONFIGS",
    "DEFAULT_CONFIGS",
    "FORMULAS",
    "GPU_PEAKS",
    "HELP",
    "PHASES",
    "BenchConfig",
    "BenchSettings",
    "PeakRSS",
    "StepTimer",
    "add_arguments",
    "arch_for_tokenizer",
    "bench_run_config",
    "build_model",
    "build_processor",
    "build_trainer",
    "command_line",
    "effective_beta",
    "environment",
    "hub_processor_dir",
    "image_patches",
    "markdown",
    "markdown_line",
    "parameter_counts",
    "peaks",
    "preload_rewards",
    "run",
    "run_config",
    "step_flops",
    "summarise",
    "tiny_model_dir",
    "train_samples",
    "unavailable_reason",
    "weight_sizes",
    "write_report",
]
