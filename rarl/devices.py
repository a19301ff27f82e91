"""Which torch device a run uses when the user does not say.

Why a module of its own: model loading, BERTScore and the benchmarks all ask the same question, and
BERTScore sits below the model code in the layers (docs/architecture.md), so the answer lives below both.
"""

from __future__ import annotations


def default_device() -> str:
    """``cuda`` when a CUDA GPU is visible, else ``cpu`` (torch is imported only when asked)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


__all__ = ["default_device"]
