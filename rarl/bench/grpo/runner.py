"""One configuration end to end: build, warm up, time the measured steps, summarise into one result row."""

from __future__ import annotations

import gc
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rarl.bench.grpo.configs import BenchConfig
from rarl.bench.grpo.environment import peaks, unavailable_reason
from rarl.bench.grpo.flops import image_patches, parameter_counts, step_flops, weight_sizes
from rarl.bench.grpo.settings import BenchSettings
from rarl.bench.grpo.setup import build_model, build_processor, build_trainer
from rarl.bench.grpo.timing import PHASES, PeakRSS, StepTimer
from rarl.errors import UserError

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# one configuration


def run_config(config: BenchConfig, settings: BenchSettings) -> dict[str, Any]:
    """Measure one configuration; never raises for out-of-memory (the row says ``oom``)."""
    import torch
    from transformers.trainer_callback import PrinterCallback

    device = settings.device
    row: dict[str, Any] = {
        "config": config.name,
        "description": config.description,
        "settings": asdict(config),
    }
    reason = unavailable_reason(config, device)
    if reason:
        return {**row, "status": "unavailable", "reason": reason}
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(settings.seed)
    timer = StepTimer(device)
    try:
        with tempfile.TemporaryDirectory(prefix="rarl-bench-") as tmp, PeakRSS() as rss:
            workdir = Path(tmp)
            processor = build_processor(settings)
            model = build_model(config, settings, processor, workdir)
            counts = parameter_counts(model)
            if device == "cuda":
                # Building random weights goes through fp32 (4-bit: a save and reload): not training cost.
                torch.cuda.reset_peak_memory_stats()
            trainer = build_trainer(config, settings, model, processor, workdir)
            row["beta"] = float(trainer.beta)
            row["trainer"] = (
                "trl.GRPOTrainer (GRPOConfig defaults)"
                if config.trl_defaults
                else ("rarl.train.grpo.build_grpo_trainer")
            )
            row["reference_model"] = trainer.ref_model is not None
            row["trainable_parameters"] = sum(
                p.numel() for p in trainer.model.parameters() if p.requires_grad
            )
            weight_bytes, decode_weight_bytes = weight_sizes(trainer.model)
            timer.instrument(trainer)
            trainer.remove_callback(PrinterCallback)  # the table is the output, not a dict per step
            trainer.train()
            trainer.accelerator.free_memory()  # drop the accelerator's references before the next config
            del trainer, model
    except torch.OutOfMemoryError as exc:
        return {**row, "status": "oom", "reason": _first_line(exc), **_memory(device, None)}
    except UserError:
        raise
    except Exception as exc:  # one broken variant (e.g. a static cache a model rejects) must not end the run
        logger.exception("configuration %s failed", config.name)
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {_first_line(exc)}"}
    finally:
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    patches = image_patches(processor, settings.image_size)
    row.update(summarise(timer, settings, config, counts, patches, row["beta"]))
    row["weight_bytes"] = weight_bytes
    row["decode_weight_bytes"] = decode_weight_bytes
    flops_peak, bandwidth_peak, source = peaks(device, settings)
    row["peak_source"] = source
    per_step = row["seconds_per_step"]["total"]
    row["achieved_tflops"] = row["flops_per_step"] / per_step / 1e12
    row["mfu"] = row["flops_per_step"] / per_step / flops_peak if flops_peak else None
    gen_s = row["seconds_per_step"]["generation"]
    decode_bytes = settings.max_completion_length * decode_weight_bytes
    row["rollout_bandwidth_util"] = decode_bytes / gen_s / bandwidth_peak if bandwidth_peak else None
    row.update(_memory(device, rss))
    row["status"] = "ok"
    return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _memory(device: str, rss: PeakRSS | None) -> dict[str, Any]:
    if device == "cuda":
        import torch

        return {
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
            "memory_kind": "torch.cuda.max_memory_allocated",
        }
    if rss is None:
        return {}
    return {
        "peak_memory_gib": rss.peak / 2**30,
        "peak_memory_above_baseline_gib": (rss.peak - rss.baseline) / 2**30,
        "memory_kind": "process peak RSS (CPU)",
    }


def summarise(
    timer: StepTimer,
    settings: BenchSettings,
    config: BenchConfig,
    counts: dict[str, int],
    patches: int,
    beta: float,
) -> dict[str, Any]:
    """Average the measured steps (after warm-up) and derive throughput and FLOPs."""
    measured = timer.steps[settings.warmup_steps :]
    if not measured:
        raise RuntimeError(f"no measured steps (trainer ran {len(timer.steps)} steps)")
    keys = (*PHASES, "total")
    mean = {k: sum(s[k] for s in measured) / len(measured) for k in keys}
    g, length = settings.num_generations, settings.max_completion_length
    prompt = sum(timer.prompt_lengths) / len(timer.prompt_lengths)
    flops = step_flops(counts, config, g, prompt, length, patches, beta)
    return {
        "steps_measured": len(measured),
        "seconds_per_step": mean,
        "seconds_per_step_each": [s["total"] for s in measured],
        "generated_tokens_per_step": g * length,
        "generated_tokens_per_s": g * length / mean["generation"],
        "samples_per_s": g / mean["total"],
        "prompt_tokens_mean": prompt,
        "image_patches": patches,
        "completion_length_min": min(timer.completion_lengths),
        "completion_length_max": max(timer.completion_lengths),
        "parameters": counts,
        "flops_split": flops,
        "flops_per_step": sum(flops.values()),
    }
