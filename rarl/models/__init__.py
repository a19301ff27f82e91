"""Models: runtime loading (:mod:`.loading`), the offline tiny Qwen2-VL (:mod:`.tiny`) and the
benchmark architecture (:mod:`.arch`). Everything is re-exported here, so ``from rarl.models import
load_model`` keeps working."""

from rarl.devices import default_device, resolve_dtype
from rarl.libconfig import LANGUAGE_MODEL_PATTERN, lora_config
from rarl.models.arch import QWEN2_VL_2B_ARCH, build_model_from_arch
from rarl.models.loading import (
    freeze_vision_tower,
    load_adapter,
    load_model,
    load_processor,
    model_label,
    resolve_model_path,
    vision_tower,
)
from rarl.models.tiny import (
    QWEN2_VL_CHAT_TEMPLATE,
    QWEN_SPECIAL_TOKENS,
    TINY_MODEL_NAME,
    TINY_VOCAB_SIZE,
    TINY_WIDTH,
    build_tiny_model,
)

__all__ = [
    "LANGUAGE_MODEL_PATTERN",
    "QWEN2_VL_2B_ARCH",
    "QWEN2_VL_CHAT_TEMPLATE",
    "QWEN_SPECIAL_TOKENS",
    "TINY_MODEL_NAME",
    "TINY_VOCAB_SIZE",
    "TINY_WIDTH",
    "build_model_from_arch",
    "build_tiny_model",
    "default_device",
    "freeze_vision_tower",
    "load_adapter",
    "load_model",
    "load_processor",
    "lora_config",
    "model_label",
    "resolve_dtype",
    "resolve_model_path",
    "vision_tower",
]
