"""What GRPO and SFT runs share: data loading, model loading, TRL arguments, checkpoints, resume.

Why: the two trainers differ only in their TRL class and a handful of method-specific arguments. Keeping
the shared part here means both get the same dtype policy (bf16 on a GPU that supports it, fp32 on CPU),
the same checkpoint cadence and the same logging (``--resume`` lives in :mod:`rarl.train.resume`).
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
    """All samples of ``data.train`` (each spec loaded and subsampled by the data module)."""
    from rarl.data import load_dataset_spec

    samples: list[Sample] = []
    for spec in config.data.train:
        samples.extend(load_dataset_spec(spec))
    if not samples:
        raise UserError("data.train produced no samples")
    return samples


def check_train_settings(config: RunConfig) -> None:
    """Every bad ``train.<method>`` value at once, before a model loads (also for configs built in code)."""
    errors = config.train.validation_errors("train")
    if errors:
        raise UserError("\n".join(errors))
    check_rollout_engine(config)


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


def precision_flags(model: Any) -> dict[str, bool]:
    """bf16/fp16 mixed-precision flags that match the weights' dtype (none on CPU / fp32)."""
    import torch

    dtype = next(model.parameters()).dtype
    on_gpu = next(model.parameters()).device.type == "cuda"
    return {"bf16": bool(on_gpu and dtype == torch.bfloat16), "fp16": bool(on_gpu and dtype == torch.float16)}


def trainer_args(config: RunConfig, model: Any, reward_weights: list[float] | None = None) -> Any:
    """``trl.GRPOConfig`` / ``trl.SFTConfig`` from ``config.train.<method>``, TRL's names as written.

    rarl adds only what it knows and the mapping cannot: where to run (``use_cpu``), mixed precision
    matching the loaded weights' dtype, and ``data_seed = seed`` (all three unless the mapping sets them),
    gradient checkpointing from ``model.gradient_checkpointing`` (the model loader enables it, so the
    trainer must agree), and the reward weights from ``reward.weights``.
    """
    from rarl.models import default_device
    from rarl.trl_schema import build_trl_config, default_value

    train = config.train
    settings = dict(train.settings)
    settings.setdefault("use_cpu", default_device() == "cpu")
    # the data order follows ``seed`` even when something else reseeded torch since (accelerate's seedable
    # sampler would otherwise start from torch's global initial seed)
    settings.setdefault("data_seed", settings.get("seed", default_value(train.method, "seed")))
    for flag, value in precision_flags(model).items():
        settings.setdefault(flag, value)
    if settings.get("report_to") == []:
        settings["report_to"] = "none"
    checkpointing = config.model.gradient_checkpointing
    # transformers 5 names; the deprecated ``gradient_checkpointing`` alias (which TRL reads, and which TRL's
    # configs default to True) mirrors them. Off unless asked for: it trades ~20% speed for memory.
    settings["activation_checkpointing"] = checkpointing
    settings["activation_checkpointing_kwargs"] = {"use_reentrant": False} if checkpointing else None
    if reward_weights is not None:
        settings["reward_weights"] = list(reward_weights)
    return build_trl_config(train.method, settings)


def peft_config_for(config: RunConfig) -> Any:
    """The LoRA config when ``lora.enabled`` (restricted to the language model), else None (full FT)."""
    from rarl.models import lora_config

    return lora_config(config.lora) if config.lora.enabled else None


def trainable_summary(model: Any) -> str:
    """'trainable N of M parameters (x%)' for the log."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"trainable {trainable:,} of {total:,} parameters ({100.0 * trainable / max(total, 1):.2f}%)"
