"""Which torch device a run uses when the user does not say.

Why a module of its own: model loading, BERTScore and the benchmarks all ask the same question, and
BERTScore sits below the model code in the layers (docs/architecture.md), so the answer lives below both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def default_device() -> str:
    """``cuda`` when a CUDA GPU is visible, else ``cpu`` (torch is imported only when asked)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: str | None = None) -> torch.dtype:
    """``auto`` means bf16 on a CUDA GPU that supports it and fp32 on CPU (CPU bf16 is slow and lossy).

    Why here: the model loader (which weights to load) and the trainer's configs (which mixed-precision
    flags match those weights) must give the same answer."""
    import torch

    if name == "auto":
        on_gpu = (device or default_device()) == "cuda"
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


__all__ = ["default_device", "resolve_dtype"]
