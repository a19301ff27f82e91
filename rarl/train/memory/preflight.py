"""`rarl train`'s memory pre-flight: a warning when the predicted GRPO step does not fit the visible GPU.

Why a warning, not an error: the prediction counts tensor bytes and has not been calibrated on a GPU yet
(docs/benchmarks.md), so it informs a decision (fewer generations, shorter completions, checkpointing)
but does not make it. Why opt-in (``RARL_MEMORY_CHECK=1``): simulating a 2B step decodes every token on
fake tensors, which took 24 minutes of one busy CPU core here — time a rented GPU would sit idle; the
same answer is one ``rarl bench memory`` away before renting. It runs only where a CUDA GPU is visible
(a CPU run has no fixed memory to compare with), and in a child process (``rarl bench memory`` with the
GPU hidden): the simulation builds its own trainer, and accelerate's process-wide state must stay the
training run's own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rarl.config import RunConfig

log = logging.getLogger(__name__)

GIB = 2**30
ENABLE_VARIABLE = "RARL_MEMORY_CHECK"


def memory_warning(predicted_bytes: int, gpu_total_bytes: int, gpu_name: str) -> str | None:
    """The warning for a prediction above the GPU's total memory, or None when it fits."""
    if predicted_bytes <= gpu_total_bytes:
        return None
    return (
        f"memory pre-flight: one GRPO step is predicted to need {predicted_bytes / GIB:.1f} GiB of tensors "
        f"at its peak, more than the {gpu_total_bytes / GIB:.1f} GiB of {gpu_name}; expect an out-of-memory "
        "error (fewer train.grpo.num_generations or per_device_train_batch_size, a shorter "
        "max_completion_length, model.gradient_checkpointing=true or LoRA lower it; per phase: "
        "rarl bench memory --config ...)"
    )


def visible_gpu() -> tuple[str, int] | None:
    """Name and total bytes of GPU 0, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    return properties.name, int(properties.total_memory)


def predict_in_subprocess(config: RunConfig, timeout_s: float = 1800.0) -> int:
    """The predicted peak bytes of ``config``'s own step shape, from ``rarl bench memory`` in a child
    process with the GPU hidden (see the module doc)."""
    from rarl.config import save_config

    grpo = config.train.grpo
    side = math.isqrt(int(config.model.max_pixels))
    with tempfile.TemporaryDirectory(prefix="rarl-memory-check-") as tmp:
        path = save_config(config, tmp)
        out = Path(tmp) / "memory.json"
        command = [
            sys.executable, "-m", "rarl", "bench", "memory", "--config", str(path),
            "--num-generations", str(grpo.get("num_generations", 8)),
            "--max-completion-length", str(grpo.get("max_completion_length", 256)),
            "--image-size", str(side), "--kernels", "cuda", "--device", "cuda", "--out", str(out),
        ]  # fmt: skip
        env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0 or not out.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"rarl bench memory exited with {done.returncode}: {last}")
        row = json.loads(out.read_text(encoding="utf-8"))["results"][0]
    if row["status"] != "ok":
        raise RuntimeError(row.get("reason", row["status"]))
    return int(row["total_gib"] * GIB)


def memory_preflight(
    config: RunConfig,
    gpu: tuple[str, int] | None = None,
    predict: Callable[[RunConfig], int] | None = None,
) -> str | None:
    """Warn (a log line) when ``config``'s GRPO step is predicted not to fit the GPU; returns the warning.

    Runs only with ``RARL_MEMORY_CHECK=1`` (see the module doc). ``gpu`` is (name, total bytes); by
    default the visible GPU 0, and nothing runs without one.
    ``predict`` returns the predicted peak bytes (default: :func:`predict_in_subprocess`). A prediction that
    fails is a log line too: the pre-flight never stops a run.
    """
    if config.train.method != "grpo" or config.train.grpo.get("use_vllm"):
        return None
    if os.environ.get(ENABLE_VARIABLE, "") in ("", "0"):
        return None
    gpu = gpu or visible_gpu()
    if gpu is None:
        return None
    name, total = gpu
    try:
        predicted = (predict or predict_in_subprocess)(config)
    except Exception as exc:  # the check is advice: a failure to predict must not stop training
        log.warning("memory pre-flight skipped: the prediction failed (%s)", exc)
        return None
    message = memory_warning(predicted, total, name)
    if message:
        log.warning(message)
    else:
        fits = "memory pre-flight: predicted peak %.1f GiB of %.1f GiB on %s"
        log.info(fits, predicted / GIB, total / GIB, name)
    return message


__all__ = ["memory_preflight", "memory_warning", "predict_in_subprocess", "visible_gpu"]
