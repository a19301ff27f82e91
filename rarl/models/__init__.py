"""Models: runtime loading (:mod:`.loading`), the offline tiny Qwen2-VL (:mod:`.tiny`), the benchmark
architecture (:mod:`.arch`), where a model comes from, checked before loading (:mod:`.source`), and
Qwen2-VL-2B-Instruct's hub layout with the real tokenizer (:mod:`.hub_layout`). Everything is re-exported
here, so ``from rarl.models import load_model`` keeps working."""

from rarl.devices import default_device, resolve_dtype
from rarl.libconfig import LANGUAGE_MODEL_PATTERN, lora_config
from rarl.models.arch import QWEN2_VL_2B_ARCH, arch_with_token_ids, build_model_from_arch
from rarl.models.hub_layout import HUB_MODEL_ID, build_hub_layout_model
from rarl.models.loading import (
    apply_training_settings,
    freeze_vision_tower,
    load_adapter,
    load_model,
    load_processor,
    model_label,
    resolve_model_path,
    vision_tower,
)
from rarl.models.source import MODEL_SETTINGS_FILES, check_model_dir, model_source
from rarl.models.tiny import (
    QWEN2_VL_CHAT_TEMPLATE,
    QWEN_SPECIAL_TOKENS,
    TINY_MODEL_NAME,
    TINY_VOCAB_SIZE,
    TINY_WIDTH,
    build_tiny_model,
)

__all__ = [
    "HUB_MODEL_ID",
    "LANGUAGE_MODEL_PATTERN",
    "MODEL_SETTINGS_FILES",
    "QWEN2_VL_2B_ARCH",
    "QWEN2_VL_CHAT_TEMPLATE",
    "QWEN_SPECIAL_TOKENS",
    "TINY_MODEL_NAME",
    "TINY_VOCAB_SIZE",
    "TINY_WIDTH",
    "apply_training_settings",
    "arch_with_token_ids",
    "build_hub_layout_model",
    "build_model_from_arch",
    "build_tiny_model",
    "check_model_dir",
    "default_device",
    "freeze_vision_tower",
    "load_adapter",
    "load_model",
    "load_processor",
    "lora_config",
    "model_label",
    "model_source",
    "resolve_dtype",
    "resolve_model_path",
    "vision_tower",
]
