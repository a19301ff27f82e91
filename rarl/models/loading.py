"""Runtime loading: model, processor and LoRA adapter (dtype and device policy: :mod:`rarl.devices`).

Why: users load ``Qwen/Qwen2-VL-2B-Instruct`` (or any Qwen2-VL-family checkpoint) from the hub or a local
directory; ``tiny`` maps to the offline tiny checkpoint (:mod:`rarl.models.tiny`) so tests, the demo and
benchmarks take the same code path without network access.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.config import ModelConfig
from rarl.devices import default_device, resolve_dtype
from rarl.errors import UserError
from rarl.io import json_file_problem, weights_file_problem
from rarl.models.source import model_source
from rarl.models.tiny import TINY_MODEL_NAME, build_tiny_model

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up
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


# --------------------------------------------------------------------------------------------------
# loading


def model_label(config: ModelConfig) -> str:
    """How a model is named in records and tables: its path or hub id, plus ``+adapter`` when one is used."""
    name = config.name_or_path
    return f"{name}+{config.adapter_path}" if config.adapter_path else name


def resolve_model_path(config: ModelConfig, cache_dir: str | Path = "outputs/tiny_model") -> str:
    """Map ``tiny`` to a built tiny checkpoint (built once per seed); pass anything else through.

    A cached folder left unfinished by an interrupted build is rebuilt rather than loaded. Anything else
    is checked first (:func:`rarl.models.source.model_source`): a folder that is not a model or a hub id
    without a hub is a one-line error here, before a loader's traceback or minutes of retries.
    """
    if config.name_or_path != TINY_MODEL_NAME:
        return model_source(config.name_or_path)
    path = Path(cache_dir) / f"seed{config.tiny_seed}"
    build_tiny_model(path, seed=config.tiny_seed, if_missing=True)
    return str(path)


def load_processor(config: ModelConfig, model_path: str | None = None) -> ProcessorMixin:
    """Load the processor with the pixel budget from config (caps the number of visual tokens).

    The budget is set on the loaded image processor, so it holds whatever the checkpoint's
    ``preprocessor_config.json`` says: a ``size={...}`` argument to ``from_pretrained`` loses to the file's
    own ``min_pixels``/``max_pixels`` (which the hub's Qwen2-VL-2B-Instruct file carries), and the
    ``min_pixels=``/``max_pixels=`` arguments are deprecated. A processor saved later records the budget.
    """
    from transformers import AutoProcessor

    path = model_path or resolve_model_path(config)
    try:
        processor = AutoProcessor.from_pretrained(path)
    except OSError as exc:
        raise UserError(f"cannot load processor from '{path}': {_first_line(exc)}") from None
    from transformers.image_utils import SizeDict

    processor.image_processor.size = SizeDict(shortest_edge=config.min_pixels, longest_edge=config.max_pixels)
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
    if config.adapter_path:
        check_adapter_dir(config.adapter_path)  # before the base model's weights: fail in a second
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=resolve_dtype(config.dtype, device), attn_implementation=config.attn_implementation
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from '{path}': {_first_line(exc)}") from None
    apply_training_settings(model, config)
    if config.adapter_path:
        model = load_adapter(model, config.adapter_path)
    return model.to(device)


def apply_training_settings(model: Any, config: ModelConfig) -> None:
    """What the loader does to a model after its weights: freeze the vision tower, turn on checkpointing.

    One function so the memory prediction (which builds the model from its configuration, without weights)
    prepares it exactly as training does."""
    if config.freeze_vision:
        freeze_vision_tower(model)
    if config.gradient_checkpointing:
        if hasattr(
            model, "activation_checkpointing_enable"
        ):  # the current transformers name (no FutureWarning)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_adapter(model: PreTrainedModel, adapter_path: str) -> PreTrainedModel:
    """Attach a trained PEFT adapter (LoRA) for inference."""
    from peft import PeftModel

    check_adapter_dir(adapter_path)
    try:
        return PeftModel.from_pretrained(model, adapter_path)
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        base = json.loads((Path(adapter_path) / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
        raise UserError(
            f"cannot load adapter from '{adapter_path}': its weights do not fit this base model (size "
            f"mismatch); it was trained on {base or 'another model'}"
        ) from None
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"cannot load adapter from '{adapter_path}': {_first_line(exc)}") from None


ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def check_adapter_dir(adapter_path: str | Path) -> None:
    """A one-line error unless ``adapter_path`` holds a whole PEFT adapter (config and weights).

    Why check first: PEFT loads a truncated ``adapter_model.safetensors`` or an edited, broken
    ``adapter_config.json`` only as far as a traceback.
    """
    folder = Path(adapter_path)
    if not folder.is_dir():
        raise UserError(f"{adapter_path}: no such adapter directory")
    if not (folder / "adapter_config.json").is_file():
        raise UserError(f"{adapter_path}: no adapter_config.json here (expected a PEFT adapter directory)")
    problem = json_file_problem(folder / "adapter_config.json")
    if problem is not None:
        raise UserError(f"{folder / 'adapter_config.json'} {problem}; the adapter cannot be loaded")
    weights = [folder / name for name in ADAPTER_WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        raise UserError(f"{adapter_path}: no adapter weights here ({' or '.join(ADAPTER_WEIGHT_FILES)})")
    problem = weights_file_problem(weights[0])
    if problem is not None:
        raise UserError(f"{weights[0]} {problem}; the adapter cannot be loaded")


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
