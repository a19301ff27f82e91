"""What GRPO and SFT runs share: data loading, model loading, the rollout-engine check, the log summary.

Why: the two trainers differ only in their TRL class and a handful of method-specific arguments; their TRL
and PEFT configs are built once, before either, by :func:`rarl.libconfig.library_configs` (``--resume``
lives in :mod:`rarl.train.resume`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError

if TYPE_CHECKING:
    from rarl.config import RunConfig
    from rarl.schema.sample import Sample

log = logging.getLogger(__name__)


def load_train_samples(config: RunConfig) -> list[Sample]:
    """All samples of ``data.train`` (each spec loaded and subsampled by :mod:`rarl.tasks.loading`)."""
    from rarl.tasks.loading import load_dataset_spec

    samples: list[Sample] = []
    for spec in config.data.train:
        samples.extend(load_dataset_spec(spec))
    if not samples:
        raise UserError("data.train produced no samples")
    return samples


def check_rollout_engine(config: RunConfig) -> None:
    """``use_vllm`` needs the vllm package: say how to get it, before a model loads, instead of TRL's
    ImportError after it."""
    import importlib.util

    wants_vllm = config.train.method == "grpo" and config.train.grpo.get("use_vllm")
    if wants_vllm and importlib.util.find_spec("vllm") is None:
        raise UserError(
            'train.grpo.use_vllm: vLLM is not installed; install it with pip install "trl[vllm]" '
            "(Linux with a CUDA GPU; TRL's extra picks a vLLM version it supports), "
            "or set train.grpo.use_vllm=false"
        )


def load_model_and_processor(config: RunConfig, model: Any = None, processor: Any = None) -> tuple[Any, Any]:
    """Load what was not given; the vision tower is frozen by :func:`rarl.models.load_model`."""
    from rarl.models import freeze_vision_tower, load_model, load_processor, resolve_model_path

    path = None
    if model is None or processor is None:
        path = resolve_model_path(config.model)
    if processor is None:
        processor = load_processor(config.model, path)
    if model is None:
        model = load_model(config.model, path)
    elif config.model.freeze_vision:
        freeze_vision_tower(model)
    return model, processor


def trainable_summary(model: Any) -> str:
    """'trainable N of M parameters (x%)' for the log."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"trainable {trainable:,} of {total:,} parameters ({100.0 * trainable / max(total, 1):.2f}%)"
