"""Runtime loading: model, processor, LoRA adapter, dtype/device choice and the LoRA settings.

Why: users load ``Qwen/Qwen2-VL-2B-Instruct`` (or any Qwen2-VL-family checkpoint) from the hub or a local
directory; ``tiny`` maps to the offline tiny checkpoint (:mod:`rarl.models.tiny`) so tests, the demo and
benchmarks take the same code path without network access.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.config import LoraSettings, ModelConfig
from rarl.devices import default_device
from rarl.errors import UserError
from rarl.models.tiny import TINY_MODEL_NAME, build_tiny_model

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedModel, ProcessorMixin

logger = logging.getLogger(__name__)

# TRL and PEFT still call transformers' deprecated ``gradient_checkpointing_*`` aliases when they wrap a
# model, start a rollout or save a checkpoint, which printed the same FutureWarning at every step and
# checkpoint; the aliases are theirs to change and say nothing about the user's run.
warnings.filterwarnings(
    "ignore",
    message=r"`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
    category=FutureWarning,
)


# LoRA must touch only the language model: Qwen2-VL's vision blocks use fused `qkv`/`proj`, but a regex on
# the module path makes the restriction explicit instead of relying on that naming accident.
LANGUAGE_MODEL_PATTERN = r".*language_model.*\.({modules})$"


# --------------------------------------------------------------------------------------------------
# dtype / device


def resolve_dtype(name: str, device: str | None = None) -> torch.dtype:
    """``auto`` means bf16 on a CUDA GPU that supports it and fp32 on CPU (CPU bf16 is slow and lossy)."""
    import torch

    if name == "auto":
        on_gpu = (device or default_device()) == "cuda"
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


# --------------------------------------------------------------------------------------------------
# loading


def model_label(config: ModelConfig) -> str:
    """How a model is named in records and tables: its path or hub id, plus ``+adapter`` when one is used."""
    name = config.name_or_path
    return f"{name}+{config.adapter_path}" if config.adapter_path else name


def resolve_model_path(config: ModelConfig, cache_dir: str | Path = "outputs/tiny_model") -> str:
    """Map ``tiny`` to a built tiny checkpoint (built once per seed); pass anything else through."""
    if config.name_or_path != TINY_MODEL_NAME:
        return config.name_or_path
    path = Path(cache_dir) / f"seed{config.tiny_seed}"
    if not (path / "config.json").exists():
        build_tiny_model(path, seed=config.tiny_seed)
    return str(path)


def load_processor(config: ModelConfig, model_path: str | None = None) -> ProcessorMixin:
    """Load the processor with the pixel budget from config (caps the number of visual tokens)."""
    from transformers import AutoProcessor

    path = model_path or resolve_model_path(config)
    try:
        processor = AutoProcessor.from_pretrained(
            path, size={"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels}
        )
    except OSError as exc:
        raise UserError(f"cannot load processor from '{path}': {_first_line(exc)}") from None
    # Generation in batches needs left padding so every prompt ends where generation starts.
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(
    config: ModelConfig, model_path: str | None = None, device: str | None = None
) -> PreTrainedModel:
    """Load a Qwen2-VL-family model by hub id or local path, with the configured dtype and attention.

    The vision tower is frozen when ``config.freeze_vision`` (the paper trains only the language model).
    An adapter in ``config.adapter_path`` is loaded on top for evaluation.
    """
    from transformers import AutoModelForImageTextToText

    path = model_path or resolve_model_path(config)
    device = device or default_device()
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=resolve_dtype(config.dtype, device), attn_implementation=config.attn_implementation
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from '{path}': {_first_line(exc)}") from None
    if config.freeze_vision:
        freeze_vision_tower(model)
    if config.gradient_checkpointing:
        if hasattr(
            model, "activation_checkpointing_enable"
        ):  # the current transformers name (no FutureWarning)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.adapter_path:
        model = load_adapter(model, config.adapter_path)
    return model.to(device)


def load_adapter(model: PreTrainedModel, adapter_path: str) -> PreTrainedModel:
    """Attach a trained PEFT adapter (LoRA) for inference."""
    from peft import PeftModel

    if not (Path(adapter_path) / "adapter_config.json").exists():
        raise UserError(f"{adapter_path}: no adapter_config.json here (expected a PEFT adapter directory)")
    return PeftModel.from_pretrained(model, adapter_path)


def vision_tower(model: Any) -> Any:
    """The vision encoder module (``visual``) of a Qwen2-VL model, however deeply wrapped (PEFT, DDP)."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "visual":
            return module
    raise ValueError("model has no vision tower named 'visual'")


def freeze_vision_tower(model: Any) -> None:
    """Stop gradients into the vision encoder and merger, and keep backward out of the frozen tower.

    Freezing the weights alone is not enough under gradient checkpointing: the input-grad hooks that
    rarl, PEFT and TRL enable would land on the tower's patch embedding and make backward run through
    every frozen block (:mod:`rarl.models._checkpointing_hooks`).
    """
    from rarl.models._checkpointing_hooks import hide_frozen_tower_embeddings

    tower = vision_tower(model)
    for parameter in tower.parameters():
        parameter.requires_grad_(False)
    hide_frozen_tower_embeddings(model, tower)


def lora_config(settings: LoraSettings) -> LoraConfig:
    """PEFT config restricted to the language model's projections named in ``settings.target_modules``."""
    from peft import LoraConfig

    modules = "|".join(sorted(settings.target_modules))
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=LANGUAGE_MODEL_PATTERN.format(modules=modules),
        task_type="CAUSAL_LM",
        bias="none",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
