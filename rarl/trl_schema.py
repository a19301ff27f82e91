"""TRL's own configs as rarl's trainer schema: ``train.grpo:`` is a ``trl.GRPOConfig``, ``train.sft:`` a
``trl.SFTConfig``.

Why: re-typing trainer settings by hand hid most of TRL (loss types, vLLM rollouts, ``steps_per_generation``,
``mask_truncated_completions``, ...) and let rarl's names drift from TRL's meaning. Here the valid keys are
read from the installed TRL's dataclasses, so every option TRL documents works under its TRL name. rarl adds
only (1) its defaults, written out in :data:`GRPO_DEFAULTS` / :data:`SFT_DEFAULTS` and saved in every
``resolved_config.yaml``; (2) range checks for values TRL accepts silently but that fail or mislead later
(``max_steps: 0`` trains one step, ``learning_rate: nan`` trains nothing); (3) the few fields rarl sets from
other sections (:data:`MANAGED`), which the mapping may not repeat, so each setting has one home.

This module sits beside :mod:`rarl.config` at the bottom of the package: it imports TRL's config classes
lazily (``trl`` pulls in torch) and nothing else of rarl but the error type.
"""

from __future__ import annotations

import copy
import difflib
import math
import types
from functools import cache
from typing import Any, Union, get_args, get_origin

from rarl.errors import UserError

METHODS = ("grpo", "sft")

# rarl's defaults beneath each mapping (a YAML mapping is merged over them; ``resolved_config.yaml`` shows
# the result). Everything not listed is TRL's own default.
GRPO_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/run",
    "num_train_epochs": 1.0,
    "learning_rate": 1e-5,
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 512,
    "beta": 0.04,
    "save_steps": 100,
    "logging_steps": 1,
    "report_to": ["tensorboard"],
    "num_completions_to_print": 0,  # the console shows a progress bar; completions go to TensorBoard
}
SFT_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/run",
    "num_train_epochs": 1.0,
    "learning_rate": 1e-5,
    "per_device_train_batch_size": 4,
    "save_steps": 100,
    "logging_steps": 1,
    "report_to": ["tensorboard"],
    "max_length": None,  # truncating a VLM sequence could cut image tokens and break the model's input
    "completion_only_loss": True,  # loss on <think>…</think><answer>…</answer>, not on the prompt
    "remove_unused_columns": False,  # the image column must reach the collator
}

# TRL fields rarl derives from another section: each setting has one home.
MANAGED: dict[str, str] = {
    "reward_weights": "reward.weights",
    "gradient_checkpointing": "model.gradient_checkpointing",
    "gradient_checkpointing_kwargs": "model.gradient_checkpointing",
    "activation_checkpointing": "model.gradient_checkpointing",
    "activation_checkpointing_kwargs": "model.gradient_checkpointing",
}

# Keys of the old flat ``train:`` section that have no TRL field of the same name.
RENAMED: dict[str, str] = {
    "warmup_ratio": "transformers 5 has no warmup_ratio; write train.{method}.warmup_steps: {value} "
    "(a value below 1 is a fraction of the total steps)",
    "min_completion_length": "it was a benchmark-only setting; to force a minimum length write "
    "train.grpo.generation_kwargs: {{min_new_tokens: {value}}}",
}


def defaults(method: str) -> dict[str, Any]:
    """A fresh copy of rarl's defaults for ``method``'s mapping."""
    return copy.deepcopy(GRPO_DEFAULTS if method == "grpo" else SFT_DEFAULTS)


def trl_config_class(method: str) -> type:
    """``trl.GRPOConfig`` or ``trl.SFTConfig`` (imported on first use: TRL imports torch)."""
    if method == "grpo":
        from trl.trainer.grpo_config import GRPOConfig

        return GRPOConfig
    from trl.trainer.sft_config import SFTConfig

    return SFTConfig


@cache
def _fields(method: str) -> dict[str, Any]:
    import dataclasses

    return {f.name: f for f in dataclasses.fields(trl_config_class(method)) if f.init}


def field_names(method: str) -> list[str]:
    """Every key ``train.<method>:`` accepts: the init fields of the installed TRL config class."""
    return sorted(_fields(method))


def default_value(method: str, name: str) -> Any:
    """TRL's own default for one field (e.g. ``seed``)."""
    return _fields(method)[name].default


def _closest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    return f"; closest valid names: {', '.join(close)}" if close else ""


def flat_key_hint(key: str, value: Any, method: str) -> str:
    """How to write an old flat ``train.<key>`` in the new shape (one line)."""
    where = f"train.{key}"
    if key in RENAMED:
        return f"{where}: {RENAMED[key].format(method=method, value=value)}"
    if key in MANAGED:
        return f"{where}: set {MANAGED[key]} instead"
    valid = set(field_names(method))
    if key in valid:
        return (
            f"{where}: trainer settings now go under train.{method} with TRL's names; write "
            f"train.{method}.{key}: {value} (see docs/training.md)"
        )
    other = "sft" if method == "grpo" else "grpo"
    if key in set(field_names(other)):
        return f"{where}: trl.{_class_name(method)} has no '{key}' (method is {method}); delete it"
    return f"unknown config key '{where}'; valid keys here: method, grpo, sft"


def _class_name(method: str) -> str:
    return "GRPOConfig" if method == "grpo" else "SFTConfig"


# --------------------------------------------------------------------------------------------------
# validation


def _simple_types(annotation: Any) -> tuple[set[type], bool] | None:
    """({int, float, ...}, allows None) for annotations made of scalars; None when not that simple."""
    if isinstance(annotation, str):
        return None
    union = get_origin(annotation) in (Union, types.UnionType)
    members = get_args(annotation) if union else (annotation,)
    allowed: set[type] = set()
    optional = False
    for member in members:
        if member is type(None):
            optional = True
        elif member in (int, float, bool, str):
            allowed.add(member)
        else:
            return None
    return allowed, optional


def _type_error(key: str, value: Any, annotation: Any) -> str | None:
    simple = _simple_types(annotation)
    if simple is None:
        return None
    allowed, optional = simple
    if value is None:
        return None if optional else f"{key}: must not be empty (null)"
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int):
        ok = bool(allowed & {int, float})
    elif isinstance(value, float):
        ok = float in allowed
    elif isinstance(value, str):
        ok = str in allowed
    else:
        ok = False
    if ok:
        return None
    names = " or ".join(sorted(t.__name__ for t in allowed))
    return f"{key}: expected {names}, got {value!r}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# Values TRL's configs accept but that fail or mislead later (TRL's own checks, e.g. num_generations >= 2 or
# whole groups per generation round, run when the config is built: see _trl_rejection).
# key -> (test, description of the valid range); applied only to keys present and numeric.
_RANGES: dict[str, tuple[Any, str]] = {
    "per_device_train_batch_size": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "learning_rate": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "num_train_epochs": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "max_steps": (lambda v: v == -1 or v >= 1, "-1 (use num_train_epochs) or an integer >= 1"),
    "max_completion_length": (lambda v: v >= 1, "an integer >= 1"),
    "max_length": (lambda v: v >= 1, "an integer >= 1 or null (no truncation)"),
    "temperature": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "top_p": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "beta": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "epsilon": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "epsilon_high": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "num_iterations": (lambda v: v >= 1, "an integer >= 1"),
    "save_steps": (lambda v: v > 0, "a number > 0"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "max_grad_norm": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "vllm_gpu_memory_utilization": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
}

# String fields whose valid values TRL states in its docs but does not check until training.
_CHOICES: dict[str, tuple[str, ...]] = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "scale_rewards": ("group", "batch", "none"),
    "importance_sampling_level": ("token", "sequence"),
    "vllm_mode": ("server", "colocate"),
}


def _choices(key: str) -> tuple[str, ...] | None:
    """The valid values of a choice field (as TRL 1.16's docs and ``compute_loss`` list them)."""
    return _CHOICES.get(key)


def validation_errors(prefix: str, method: str, settings: dict[str, Any]) -> list[str]:
    """Every problem with ``settings`` as ``trl.<Method>Config`` keyword arguments (empty when fine).

    ``prefix`` is where the mapping lives (``train.grpo``). Unknown keys name the closest valid ones.
    """
    if not isinstance(settings, dict):
        return [f"{prefix}: expected a mapping of trl.{_class_name(method)} settings, got {settings!r}"]
    if settings == defaults(method):
        return []  # rarl's own defaults: known good, and no need to import TRL (slow) for commands like judge
    fields = _fields(method)
    errors: list[str] = []
    for key, value in settings.items():
        where = f"{prefix}.{key}"
        if key in MANAGED:
            errors.append(f"{where}: rarl sets this from {MANAGED[key]}; set it there instead")
            continue
        if key not in fields:
            errors.append(_unknown_key_message(where, key, value, method))
            continue
        problem = _type_error(where, value, fields[key].type)
        if problem:
            errors.append(problem)
            continue
        number = _number(value)
        if key in _RANGES and number is not None:
            test, valid = _RANGES[key]
            if math.isnan(number) or not test(number):
                errors.append(f"{where}: must be {valid} (got {value!r})")
        choices = _choices(key)
        if choices and isinstance(value, str) and value not in choices:
            errors.append(f"{where}: invalid value {value!r}; valid options: {', '.join(choices)}")
    if not errors:
        errors.extend(_trl_rejection(prefix, method, settings))
    return errors


def _unknown_key_message(where: str, key: Any, value: Any, method: str) -> str:
    if key in RENAMED:
        return f"{where}: {RENAMED[key].format(method=method, value=value)}"
    return f"{where}: trl.{_class_name(method)} has no such field{_closest(str(key), field_names(method))}"


def unknown_key_errors(prefix: str, method: str, settings: Any) -> list[str]:
    """The keys of ``settings`` that ``trl.<Method>Config`` lacks (for the mapping that does not train)."""
    if not isinstance(settings, dict):
        return [f"{prefix}: expected a mapping of trl.{_class_name(method)} settings, got {settings!r}"]
    if settings == defaults(method):
        return []
    fields = _fields(method)
    return [
        _unknown_key_message(f"{prefix}.{k}", k, v, method) for k, v in settings.items() if k not in fields
    ]


def _trl_rejection(prefix: str, method: str, settings: dict[str, Any]) -> list[str]:
    """What TRL's own ``__post_init__`` rejects (e.g. ``num_generations: 1``, or a generation round that does
    not split into whole groups), as one line, without duplicating its checks. The device-dependent flags
    are set to what any machine can build, so a GPU config validates on a laptop too."""
    cls = trl_config_class(method)
    trial = {k: v for k, v in settings.items() if k not in MANAGED}
    trial |= {"use_cpu": True, "bf16": False, "fp16": False}
    if "activation_checkpointing" in _fields(method):
        # Checkpointing is rarl's (model.gradient_checkpointing); naming it here keeps transformers from
        # warning that TRL's default for the deprecated alias is deprecated, at every config load.
        trial["activation_checkpointing"] = False
    try:
        cls(**trial)
    except (ValueError, TypeError) as exc:
        return [f"{prefix}: trl.{cls.__name__} rejects these settings: {' '.join(str(exc).split())}"]
    return []


def build_trl_config(method: str, settings: dict[str, Any], prefix: str | None = None) -> Any:
    """``trl.GRPOConfig(**settings)`` or ``trl.SFTConfig(**settings)``; TRL's rejections become one line."""
    prefix = prefix or f"train.{method}"
    errors = validation_errors(prefix, method, {k: v for k, v in settings.items() if k not in MANAGED})
    if errors:
        raise UserError("\n".join(errors))
    cls = trl_config_class(method)
    try:
        return cls(**settings)
    except (ValueError, TypeError) as exc:  # device-dependent rejections (e.g. bf16 on a CPU)
        message = " ".join(str(exc).split())
        raise UserError(f"{prefix}: trl.{cls.__name__} rejects these settings: {message}") from None


__all__ = [
    "GRPO_DEFAULTS",
    "MANAGED",
    "METHODS",
    "SFT_DEFAULTS",
    "build_trl_config",
    "default_value",
    "defaults",
    "field_names",
    "flat_key_hint",
    "trl_config_class",
    "unknown_key_errors",
    "validation_errors",
]
