"""What GRPO and SFT runs share: data loading, model loading, trainer arguments, checkpoints, resume.

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
    from rarl.data.schema import Sample

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


def shared_training_args(config: RunConfig, model: Any) -> dict[str, Any]:
    """TrainingArguments fields common to GRPOConfig and SFTConfig, from ``config.train``."""
    import torch

    train = config.train
    checkpointing = config.model.gradient_checkpointing

    return {
        "output_dir": train.output_dir,
        "max_steps": train.max_steps,
        "num_train_epochs": train.num_train_epochs,
        "learning_rate": train.learning_rate,
        "per_device_train_batch_size": train.per_device_train_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "warmup_steps": train.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": train.save_total_limit,
        "logging_steps": train.logging_steps,
        "seed": train.seed,
        "data_seed": train.seed,
        "report_to": list(train.report_to) or "none",
        # transformers 5 name; the deprecated ``gradient_checkpointing`` alias (which TRL reads, and which
        # TRL's configs default to True) mirrors it. Off unless asked for: it trades ~20% speed for memory.
        "activation_checkpointing": checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        **precision_flags(model),
    }


def peft_config_for(config: RunConfig) -> Any:
    """The LoRA config when ``lora.enabled`` (restricted to the language model), else None (full FT)."""
    from rarl.models import lora_config

    return lora_config(config.lora) if config.lora.enabled else None


def trainable_summary(model: Any) -> str:
    """'trainable N of M parameters (x%)' for the log."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"trainable {trainable:,} of {total:,} parameters ({100.0 * trainable / max(total, 1):.2f}%)"
