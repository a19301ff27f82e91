"""What produced an output directory, so a rerun can resume exactly that or refuse.

Why: ``rarl eval`` and ``rarl train --resume`` reuse what is already on disk (predictions, checkpoints).
That is only honest when the reused outputs were made by the same settings from the same data; otherwise
a rerun would silently report old outputs as new results. Every output directory therefore holds a
``provenance.json`` with the settings that affect its outputs, and every prediction carries a fingerprint
of its item (question, references, choices, image). A rerun compares both and refuses with one line that
names what differs and how to start fresh.

Which settings count: those that change what the model outputs (model, adapter weights and config, a
local model folder's config, tokenizer and chat template files, dtype, pixel budget, prompt, decoding;
for training every model/LoRA/data/reward/trainer hyper-parameter, the model folder's settings files and
the training data itself). Settings that only change speed, logging or where files go (batch size,
attention kernel, gradient checkpointing, logging/saving cadence, output paths, ``max_steps`` /
``num_train_epochs`` so a run can be extended) are recorded in ``resolved_config.yaml`` but not compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError
from rarl.io import atomic_write_json

if TYPE_CHECKING:
    from rarl.config import RunConfig
    from rarl.schema.sample import Sample

PROVENANCE_FILE = "provenance.json"

# What a prediction depends on besides the item itself (eval compares exactly these keys).
EVAL_SETTING_KEYS = (
    "model.name_or_path",
    "model.adapter_path",
    "model.dtype",
    "model.min_pixels",
    "model.max_pixels",
    "model.freeze_vision",
    "model.tiny_seed",
    "eval.prompt",
    "eval.max_new_tokens",
    "eval.do_sample",
)

# What a prediction of a served model (eval.backend: openai) depends on besides the prompt and decoding.
SERVED_SETTING_KEYS = ("eval.backend", "eval.openai.base_url", "eval.openai.model", "model.max_pixels")

# Under eval.prompt: training_template, these choose each item's template: they change the predictions.
TRAINING_TEMPLATE_KEYS = (
    "data.seed",
    "data.prompt_diversity",
    "data.template_ratios",
    "data.single_template",
)

# Training settings (by their last name component, so they match however the train section nests) that
# change only speed, logging or file locations, or that legitimately change to extend a run.
TRAIN_COSMETIC_NAMES = frozenset(
    {
        "output_dir",
        "logging_dir",
        "report_to",
        "logging_steps",
        "logging_strategy",
        "logging_first_step",
        "log_completions",
        "num_completions_to_print",
        "save_steps",
        "save_strategy",
        "save_total_limit",
        "save_only_model",
        "disable_tqdm",
        "dataloader_num_workers",
        "run_name",
        "push_to_hub",
        "hub_model_id",
        "max_steps",
        "num_train_epochs",
        "gradient_checkpointing",
        "gradient_checkpointing_kwargs",
        "activation_checkpointing",
        "activation_checkpointing_kwargs",
        "attn_implementation",
        # TRL/transformers names for evaluation-during-training, hub upload, DDP and loader plumbing
        "resume_from_checkpoint",
        "overwrite_output_dir",
        "eval_strategy",
        "eval_steps",
        "per_device_eval_batch_size",
        "hub_strategy",
        "hub_private_repo",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "skip_memory_metrics",
        "ddp_timeout",
        "ddp_find_unused_parameters",
        "dataloader_pin_memory",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "vllm_gpu_memory_utilization",
    }
)
TRAIN_SECTIONS = ("model", "lora", "data", "reward", "train")


# --------------------------------------------------------------------------------------------------
# fingerprints


def _image_digest(image: Any, cache: dict[str, str]) -> str:
    """Hash of an image's file bytes (path) or of its decoded pixels (in-memory PIL image)."""
    if image is None:
        return "none"
    if isinstance(image, (str, Path)):
        key = str(image)
        if key not in cache:
            path = Path(key)
            digest = hashlib.sha256()
            if path.is_file():
                with path.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
            else:
                digest.update(f"missing:{key}".encode())
            cache[key] = digest.hexdigest()
        return cache[key]
    if hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):
        digest = hashlib.sha256(f"{image.mode}:{image.size}:".encode())
        digest.update(image.tobytes())
        return digest.hexdigest()
    return hashlib.sha256(repr(image).encode()).hexdigest()


def item_fingerprint(sample: Sample, _cache: dict[str, str] | None = None) -> str:
    """A short hash of everything about an item that its prediction and its score depend on."""
    content = {
        "question": sample.question,
        "answer": sample.answer,
        "question_type": sample.question_type,
        "reasoning": sample.reasoning,
        "choices": list(sample.choices) if sample.choices else None,
        "image": _image_digest(sample.image, _cache if _cache is not None else {}),
    }
    text = json.dumps(content, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def item_fingerprints(samples: Iterable[Sample]) -> list[str]:
    """:func:`item_fingerprint` of each sample (an image file shared by several items is read once)."""
    cache: dict[str, str] = {}
    return [item_fingerprint(sample, cache) for sample in samples]


def data_fingerprint(samples: Iterable[Sample]) -> str:
    """One hash over the items in order (training data: order matters too)."""
    digest = hashlib.sha256()
    for fingerprint in item_fingerprints(samples):
        digest.update(fingerprint.encode())
    return digest.hexdigest()[:16]


def file_digest(path: str | Path) -> str | None:
    """Hash of a weights file (None when absent), so a retrained adapter at the same path is noticed."""
    return _image_digest(str(path), {}) if Path(path).is_file() else None


# --------------------------------------------------------------------------------------------------
# settings


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists of mappings as ``{"a.b": value, "a.0.c": value}``."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(data, list) and any(isinstance(item, Mapping) for item in data):
        out = {}
        for index, item in enumerate(data):
            out.update(flatten(item, f"{prefix}{index}."))
        return out
    return {prefix.rstrip("."): data}


def _adapter_weights(adapter_path: str | None) -> str | None:
    if not adapter_path:
        return None
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        digest = file_digest(Path(adapter_path) / name)
        if digest:
            return digest
    return None


def settings_digest(folder: str | Path | None, names: Iterable[str]) -> str | None:
    """One hash over the named settings files of a local folder (None when it is not one).

    JSON files are hashed as parsed data, so re-indenting one is not a change while editing a value is
    (``lora_alpha`` 16 -> 64 scales every adapter output).
    """
    if not folder or not Path(folder).is_dir():
        return None
    digest = hashlib.sha256()
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            continue
        content = path.read_bytes()
        if name.endswith(".json"):
            with contextlib.suppress(ValueError):  # else hashed as bytes; loading it will say what is wrong
                content = json.dumps(json.loads(content), sort_keys=True, ensure_ascii=False).encode()
        digest.update(f"{name}:{len(content)}:".encode())
        digest.update(content)
    return digest.hexdigest()[:16]


def model_files_digest(config: RunConfig) -> str | None:
    """:func:`settings_digest` of a local base model folder (None for a hub id and for ``tiny``, whose
    files follow from ``model.tiny_seed``)."""
    from rarl.models import MODEL_SETTINGS_FILES, TINY_MODEL_NAME

    if config.model.name_or_path == TINY_MODEL_NAME:
        return None
    return settings_digest(config.model.name_or_path, MODEL_SETTINGS_FILES)


def eval_settings(config: RunConfig) -> dict[str, Any]:
    """The settings a prediction depends on (see :data:`EVAL_SETTING_KEYS`), plus the adapter's weights
    and config and a local model folder's settings files (:data:`rarl.models.MODEL_SETTINGS_FILES`).

    The file digests are recorded only where there is such a file (an adapter, a local folder), so a run
    on a hub id compares as it always did.
    """
    from rarl.config import to_dict

    flat = flatten(to_dict(config))
    served = config.eval.backend == "openai"
    settings = served_eval_settings(flat) if served else _local_settings(config, flat)
    if config.eval.image_control != "none":  # recorded only for a control run: older runs compare as before
        settings["eval.image_control"] = config.eval.image_control
        if config.eval.image_control == "shuffled":
            settings["eval.image_control_seed"] = config.eval.image_control_seed
    return settings


def _local_settings(config: RunConfig, flat: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`eval_settings` of the local (transformers) backend."""
    settings = {key: flat.get(key) for key in EVAL_SETTING_KEYS}
    if config.eval.prompt == "training_template":  # which template each item gets depends on these
        settings.update({k: v for k, v in flat.items() if k.startswith(TRAINING_TEMPLATE_KEYS)})
    settings["model.adapter_weights"] = _adapter_weights(config.model.adapter_path)
    if config.model.adapter_path:
        settings["model.adapter_config"] = settings_digest(config.model.adapter_path, ["adapter_config.json"])
    model_files = model_files_digest(config)
    if model_files is not None:
        settings["model.files"] = model_files
    # "auto" means bf16 on a GPU and fp32 on CPU: the same config produces different outputs on each.
    from rarl.models import resolve_dtype

    settings["model.dtype_resolved"] = str(resolve_dtype(config.model.dtype)).removeprefix("torch.")
    return settings


def served_eval_settings(flat: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`eval_settings` of ``eval.backend: openai``: which server and served model, the pixel budget
    (the images are capped here before sending), prompt and decoding. The local ``model:`` settings are
    left out (no local model runs), so pointing ``model.name_or_path`` elsewhere does not refuse a resume,
    while another ``base_url`` or served ``model`` does, like a changed local model."""
    keys = [key for key in EVAL_SETTING_KEYS if not key.startswith("model.")] + list(SERVED_SETTING_KEYS)
    return {key: flat.get(key) for key in keys}


def train_settings_from_dict(config: Mapping[str, Any]) -> dict[str, Any]:
    """Training settings from a config's plain data, without the cosmetic ones."""
    flat = flatten({section: config.get(section) for section in TRAIN_SECTIONS if section in config})
    return {key: value for key, value in flat.items() if key.rsplit(".", 1)[-1] not in TRAIN_COSMETIC_NAMES}


def train_settings(config: RunConfig, samples: list[Sample] | None = None) -> dict[str, Any]:
    """Every hyper-parameter that changes what training does, plus a fingerprint of the training data."""
    from rarl.config import to_dict

    settings = train_settings_from_dict(to_dict(config))
    model_files = model_files_digest(config)
    if model_files is not None:
        settings["model.files"] = model_files
    if samples is not None:
        settings["data.train_fingerprint"] = data_fingerprint(samples)
    return settings


# --------------------------------------------------------------------------------------------------
# the record in each output directory


def read_provenance(out_dir: str | Path) -> dict[str, Any] | None:
    """The recorded provenance of a directory, or None when it has none."""
    path = Path(out_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise UserError(f"{path}: unreadable provenance record; pass --overwrite to start fresh") from None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise UserError(f"{path}: unreadable provenance record; pass --overwrite to start fresh")
    return data


def write_provenance(out_dir: str | Path, kind: str, settings: Mapping[str, Any]) -> Path:
    """Record (atomically) which settings produced the outputs of ``out_dir``."""
    from rarl import __version__

    return atomic_write_json(
        Path(out_dir) / PROVENANCE_FILE,
        {"kind": kind, "rarl_version": __version__, "settings": dict(sorted(as_recorded(settings).items()))},
    )


def as_recorded(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as they read back from ``provenance.json`` (tuples become lists, enums strings, ...)."""
    return json.loads(json.dumps(dict(settings), ensure_ascii=False, default=str))


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"key: old -> new"`` for every setting that differs (a key missing on one side counts)."""
    recorded, current = as_recorded(recorded), as_recorded(current)
    missing = "(unset)"
    out = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, missing), current.get(key, missing)
        if old != new:
            out.append(f"{key}: {_short(old)} -> {_short(new)}")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def check_same_settings(
    recorded: Mapping[str, Any] | None, current: Mapping[str, Any], *, what: str, fresh: str
) -> None:
    """Refuse (one line) when ``recorded`` settings differ from ``current``; nothing recorded passes."""
    if recorded is None:
        return
    diffs = differences(recorded, current)
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise UserError(f"{what} was produced with other settings ({shown}); {fresh}")


__all__ = [
    "EVAL_SETTING_KEYS",
    "PROVENANCE_FILE",
    "TRAIN_COSMETIC_NAMES",
    "check_same_settings",
    "data_fingerprint",
    "differences",
    "eval_settings",
    "flatten",
    "item_fingerprint",
    "item_fingerprints",
    "model_files_digest",
    "read_provenance",
    "settings_digest",
    "train_settings",
    "train_settings_from_dict",
    "write_provenance",
]
