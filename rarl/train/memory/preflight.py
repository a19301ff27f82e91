"""`rarl train`'s memory pre-flight: a warning when the predicted GRPO step does not fit the visible GPU.

Why a warning, not an error: the prediction counts tensor bytes and has not been calibrated on a GPU yet
(docs/benchmarks.md), so it informs a decision (fewer generations, shorter completions, checkpointing)
but does not make it. It runs only where a CUDA GPU is visible (a CPU run has no fixed memory to compare
with), and by default it only *looks up* a prediction of the run's own step (:mod:`.store`: the ones
``rarl bench memory`` made on this machine, then the tables committed under ``benchmarks/``), which takes
milliseconds. Simulating a step that was never predicted decodes every token on fake tensors — 6 to 24
minutes of CPU for the 2B, time a rented GPU would sit idle — so that happens only with
``RARL_MEMORY_CHECK=1``; without it the log says the one command that gives the answer. The simulation
runs in a child process (``rarl bench memory`` with the GPU hidden): it builds its own trainer, and
accelerate's process-wide state must stay the training run's own.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.train.memory.store import config_shape, find_prediction, step_digest

if TYPE_CHECKING:
    from rarl.config import RunConfig

log = logging.getLogger(__name__)

GIB = 2**30
ENABLE_VARIABLE = "RARL_MEMORY_CHECK"


LOWER_IT = (
    "fewer train.grpo.num_generations or per_device_train_batch_size, a shorter max_completion_length, "
    "model.gradient_checkpointing=true or LoRA lower it; per phase: rarl bench memory --config ..."
)


def headroom_bytes(predicted_bytes: int) -> int:
    """What the uncalibrated prediction leaves out, at most: 1 GiB plus 10 % (CUDA context, workspaces,
    allocator fragmentation; docs/benchmarks.md)."""
    return GIB + predicted_bytes // 10


def memory_warning(predicted_bytes: int, gpu_total_bytes: int, gpu_name: str) -> str | None:
    """The warning for a prediction above the GPU's total memory, or within the headroom the prediction
    leaves out; None when it fits with that headroom."""
    need, total = predicted_bytes / GIB, gpu_total_bytes / GIB
    if predicted_bytes > gpu_total_bytes:
        return (
            f"memory pre-flight: one GRPO step is predicted to need {need:.1f} GiB of tensors at its peak, "
            f"more than the {total:.1f} GiB of {gpu_name}; expect an out-of-memory error ({LOWER_IT})"
        )
    if predicted_bytes + headroom_bytes(predicted_bytes) > gpu_total_bytes:
        return (
            f"memory pre-flight: one GRPO step is predicted to need {need:.1f} GiB of tensors at its peak, "
            f"within 1 GiB + 10 % of the {total:.1f} GiB of {gpu_name} (the CUDA context, workspaces and "
            f"fragmentation are not in the prediction); an out-of-memory error is possible ({LOWER_IT})"
        )
    return None


def visible_gpu() -> tuple[str, int] | None:
    """Name and total bytes of GPU 0, or None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    return properties.name, int(properties.total_memory)


def predict_in_subprocess(config: RunConfig, timeout_s: float = 1800.0) -> int:
    """The predicted peak bytes of ``config``'s own step shape, from ``rarl bench memory`` in a child
    process with the GPU hidden (see the module doc); the child stores it for the next lookup."""
    from rarl.config import save_config

    shape = config_shape(config)
    with tempfile.TemporaryDirectory(prefix="rarl-memory-check-") as tmp:
        path = save_config(config, tmp)
        out = Path(tmp) / "memory.json"
        command = [
            sys.executable, "-m", "rarl", "bench", "memory", "--config", str(path),
            "--num-generations", str(shape.num_generations),
            "--max-completion-length", str(shape.max_completion_length),
            "--image-size", str(shape.image_size), "--kernels", "cuda", "--device", "cuda", "--out", str(out),
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
    lookup: Callable[[str], tuple[dict[str, Any], str] | None] = find_prediction,
) -> str | None:
    """Warn (a log line) when ``config``'s GRPO step is predicted not to fit the GPU; returns the warning.

    ``gpu`` is (name, total bytes); by default the visible GPU 0, and nothing runs without one. A stored
    prediction of this very step (``lookup``, by :func:`~rarl.train.memory.store.step_digest`) answers
    at once; otherwise ``predict`` (default :func:`predict_in_subprocess`) runs only with
    ``RARL_MEMORY_CHECK=1`` (module doc), and without it the log names the command that answers. A
    prediction that fails is a log line too: the pre-flight never stops a run.
    """
    if config.train.method != "grpo" or config.train.grpo.get("use_vllm"):
        return None
    gpu = gpu or visible_gpu()
    if gpu is None:
        return None
    name, total = gpu
    try:
        digest = step_digest(config, config_shape(config))
        found = lookup(digest)
    except Exception as exc:  # the check is advice: a failure to look up must not stop training
        log.warning("memory pre-flight skipped: %s", exc)
        return None
    if found is not None:
        row, source = found
        predicted, source = int(row["total_gib"] * GIB), f"stored prediction, {source}"
    elif os.environ.get(ENABLE_VARIABLE, "") in ("", "0"):
        log.info(
            "memory pre-flight: this step (%s) was never predicted; `rarl bench memory --config <this "
            "config>` predicts it without a GPU (CPU minutes; run it before renting one), or "
            "%s=1 runs that here first",
            digest,
            ENABLE_VARIABLE,
        )
        return None
    else:
        try:
            predicted, source = (predict or predict_in_subprocess)(config), "simulated now"
        except Exception as exc:  # the check is advice: a failure to predict must not stop training
            log.warning("memory pre-flight skipped: the prediction failed (%s)", exc)
            return None
    message = memory_warning(predicted, total, name)
    if message:
        message = f"{message} [{source}]"
        log.warning(message)
    else:
        fits = "memory pre-flight: predicted peak %.1f GiB of %.1f GiB on %s [%s]"
        log.info(fits, predicted / GIB, total / GIB, name, source)
    return message


__all__ = ["headroom_bytes", "memory_preflight", "memory_warning", "predict_in_subprocess", "visible_gpu"]
