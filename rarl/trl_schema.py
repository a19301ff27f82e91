"""TRL's own configs as rarl's trainer schema: ``train.grpo:`` is a ``trl.GRPOConfig``, ``train.sft:`` a
``trl.SFTConfig``.

Why: re-typing trainer settings by hand hid most of TRL (loss types, vLLM rollouts, ``steps_per_generation``,
``mask_truncated_completions``, ...) and let rarl's names drift from TRL's meaning. Here the valid keys are
read from the installed TRL's dataclasses, so every option TRL documents works under its TRL name. rarl adds
only (1) its defaults, written out in :data:`GRPO_DEFAULTS` / :data:`SFT_DEFAULTS` and saved in every
``resolved_config.yaml``; (2) range checks for values TRL accepts silently but that fail or mislead later
(``max_steps: 0`` trains one step, ``learning_rate: nan`` trains nothing); (3) the few fields rarl sets from
other sections (:data:`MANAGED`), which the mapping may not repeat, so each setting has one home.

This module checks the *mapping* when the config loads (every command); TRL's own ``__post_init__`` rules
run once, when :func:`rarl.libconfig.library_configs` builds the ``GRPOConfig`` a run trains with. It sits
beside :mod:`rarl.config` at the bottom of the package: it imports TRL's config classes lazily (``trl``
pulls in torch) and nothing else of rarl but the error type.
"""

from __future__ import annotations

import copy
import difflib
import enum
import math
import reprlib
import types
from functools import cache
from typing import Any, Union, get_args, get_origin

METHODS = ("grpo", "sft")

_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def shown(value: Any) -> str:
    """``repr(value)`` bounded in length: an error message must not print (or hang on) a huge value."""
    return _REPR.repr(value)


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


@cache
def _annotations(method: str) -> dict[str, Any]:
    """Each field's annotation, read from the class's own annotations rather than from ``Field.type``:
    ``transformers.HfArgumentParser`` rewrites ``Field.type`` in place when it is built (``None | str |
    list[str]`` becomes ``str``), so after the first :func:`rarl.libconfig.library_configs` the fields
    would claim that ``report_to: [tensorboard]`` is wrong."""
    from typing import get_type_hints

    hints = get_type_hints(trl_config_class(method))
    return {name: hints[name] for name in _fields(method)}


def field_names(method: str) -> list[str]:
    """Every key ``train.<method>:`` accepts: the init fields of the installed TRL config class."""
    return sorted(_fields(method))


def default_value(method: str, name: str) -> Any:
    """TRL's own default for one field (e.g. ``seed``)."""
    return _fields(method)[name].default


def _closest(key: str, names: list[str]) -> str:
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    return f"; closest valid names: {', '.join(close)}" if close else ""


def _class_name(method: str) -> str:
    return "GRPOConfig" if method == "grpo" else "SFTConfig"


# --------------------------------------------------------------------------------------------------
# validation


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def bool_word(value: Any) -> bool | None:
    """The boolean a word means (``yes``/``no``/``on``/``off``/``true``/``false``, any case), or None.

    Why: YAML 1.1's boolean words are strings under the YAML 1.2 rules rarl reads configs by; a field whose
    type is boolean still takes them by meaning (rarl's own fields and TRL's alike).
    """
    return _BOOL_WORDS.get(value.strip().lower()) if isinstance(value, str) else None


def _members(annotation: Any) -> tuple[Any, ...]:
    """The members of a union annotation (``X | None`` -> ``(X, NoneType)``); any other, alone."""
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _accepts(annotation: Any, value: Any) -> bool | None:
    """Whether ``value`` fits ``annotation``; None when the annotation is not one this module can read
    (TRL then checks the value itself when the config is built)."""
    if isinstance(annotation, str) or annotation is Any:
        return None
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        verdicts = [_accepts(member, value) for member in get_args(annotation)]
        return True if any(verdicts) else None if None in verdicts else False
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in {member.value for member in annotation}
    if annotation is list or origin is list:
        if not isinstance(value, list):
            return False
        (item,) = get_args(annotation) or (Any,)
        verdicts = [_accepts(item, element) for element in value]
        return False if False in verdicts else None if None in verdicts else True
    if annotation is dict or origin is dict:
        return isinstance(value, dict)
    return None


def _describe(annotation: Any) -> str:
    """An annotation as a user reads it (``a string or a list of strings``)."""
    names = []
    for member in _members(annotation):
        origin = get_origin(member)
        if member is type(None):
            continue
        if member is list or origin is list:
            (item,) = get_args(member) or (Any,)
            names.append(f"a list of {_describe(item).removeprefix('a ').removeprefix('an ')}s")
        elif member is dict or origin is dict:
            names.append("a mapping")
        elif isinstance(member, type) and issubclass(member, enum.Enum):
            names.append("one of " + ", ".join(repr(m.value) for m in member))
        else:
            names.append(
                {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
                    member, getattr(member, "__name__", str(member))
                )
            )
    return " or ".join(dict.fromkeys(names))


def _type_error(key: str, value: Any, annotation: Any) -> str | None:
    if value is None:
        return None if type(None) in _members(annotation) else f"{key}: must not be empty (null)"
    if _accepts(annotation, value) is False:
        return f"{key}: expected {_describe(annotation)}, got {shown(value)}"
    return None


def normalise(method: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with values whose meaning the field's type makes unambiguous turned into that type.

    Why: a boolean field given ``yes``/``no``/``on``/``off`` (YAML 1.1 booleans, strings under the YAML 1.2
    rules rarl reads configs by) means true or false, and a number field given ``"1e-5"`` means the number;
    refusing them would only make the user retype what they meant. Fields that also accept strings (TRL's
    ``save_strategy: "no"``) keep the string.
    """
    if not isinstance(settings, dict) or settings == defaults(method):
        return settings
    fields = _fields(method)
    out = dict(settings)
    for key, value in settings.items():
        if key not in fields or not isinstance(value, str):
            continue
        members = _members(_annotations(method)[key])
        if str in members:
            continue
        word = value.strip().lower()
        if bool in members and bool_word(word) is not None:
            out[key] = bool_word(word)
        elif float in members or int in members:
            try:
                number = float(word)
            except ValueError:
                continue
            if int in members and number.is_integer() and not any(c in word for c in ".e"):
                out[key] = int(number)
            elif float in members:
                out[key] = number
    return out


def _report_to_errors(key: str, value: Any) -> list[str]:
    """``report_to`` names integrations transformers knows and this machine has installed.

    Why here: TrainingArguments stores any string; the trainer refuses an unknown name, or an integration
    whose package is missing, only after the model and data are loaded.
    """
    from transformers.integrations import (
        get_available_reporting_integrations,
        get_reporting_integration_callbacks,
    )

    names = [value] if isinstance(value, str) else list(value or [])
    if names in (["none"], ["all"]):
        return []
    try:
        get_reporting_integration_callbacks(names)
    except ValueError as exc:
        return [f"{key}: {' '.join(str(exc).split())}"]
    installed = set(get_available_reporting_integrations())
    missing = [name for name in names if name not in installed]
    if missing:
        names_missing = ", ".join(missing)
        return [f"{key}: {names_missing} not installed here (pip install {' '.join(missing)}), or use none"]
    return []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# Rules no library checks (TRL 1.16 / transformers 5.24 store these values as given; checked against their
# ``__post_init__``): each value here fails or misleads only later, after the model and data have loaded.
# TRL's own rules (num_generations >= 2, whole groups per generation round, ...) are not copied: they run
# when :func:`rarl.libconfig.library_configs` builds the config.
# key -> (test, description of the valid range, why); applied only to keys present and numeric.
_RANGES: dict[str, tuple[Any, str, str]] = {
    "per_device_train_batch_size": (lambda v: v >= 1 and v == int(v), "an integer >= 1", "0: no batch"),
    "gradient_accumulation_steps": (lambda v: v >= 1 and v == int(v), "an integer >= 1", "0: no step"),
    "learning_rate": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0", "nan/0 train nothing"),
    "num_train_epochs": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0", "0 trains nothing"),
    "max_steps": (
        lambda v: v == -1 or v >= 1,
        "-1 (use num_train_epochs) or an integer >= 1",
        "0 silently trains one step",
    ),
    "max_completion_length": (lambda v: v >= 1, "an integer >= 1", "fails in generate"),
    "max_length": (lambda v: v >= 1, "an integer >= 1 or null (no truncation)", "0 truncates everything"),
    "temperature": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0", "fails in sampling"),
    "top_p": (lambda v: 0 < v <= 1, "a number in (0, 1]", "fails in sampling"),
    "beta": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "a negative KL weight"),
    "epsilon": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "an inverted clip range"),
    "epsilon_high": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "an inverted clip"),
    "num_iterations": (lambda v: v >= 1, "an integer >= 1", "0: no update per generation"),
    "save_steps": (lambda v: v > 0, "a number > 0", "fails at the first save"),
    "weight_decay": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "grows the weights"),
    "max_grad_norm": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0", "nan weights"),
    "vllm_gpu_memory_utilization": (lambda v: 0 < v <= 1, "a number in (0, 1]", "fails in vLLM"),
}

# String fields (annotated plain ``str``) whose valid values TRL 1.16 names only in its docs and in
# ``GRPOTrainer.compute_loss``: an unknown value fails there, at the first training step.
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
        return [f"{prefix}: expected a mapping of trl.{_class_name(method)} settings, got {shown(settings)}"]
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
            errors.append(_unknown_key_message(where, key, method))
            continue
        problem = _type_error(where, value, _annotations(method)[key])
        if problem:
            errors.append(problem)
            continue
        if key == "report_to":
            errors.extend(_report_to_errors(where, value))
        number = _number(value)
        if key in _RANGES and number is not None:
            test, valid, _why = _RANGES[key]
            if math.isnan(number) or not test(number):
                errors.append(f"{where}: must be {valid} (got {shown(value)})")
        choices = _choices(key)
        if choices and isinstance(value, str) and value not in choices:
            errors.append(f"{where}: invalid value {shown(value)}; valid options: {', '.join(choices)}")
    return errors


def _unknown_key_message(where: str, key: Any, method: str) -> str:
    return f"{where}: trl.{_class_name(method)} has no such field{_closest(str(key), field_names(method))}"


def unknown_key_errors(prefix: str, method: str, settings: Any) -> list[str]:
    """The keys of ``settings`` that ``trl.<Method>Config`` lacks (for the mapping that does not train)."""
    if not isinstance(settings, dict):
        return [f"{prefix}: expected a mapping of trl.{_class_name(method)} settings, got {shown(settings)}"]
    if settings == defaults(method):
        return []
    fields = _fields(method)
    return [
        _unknown_key_message(f"{prefix}.{k}", k, method) for k in settings if k not in fields
    ]


def one_line(exc: BaseException) -> str:
    """A library's error message on one bounded line (it may quote a huge value back)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = [
    "GRPO_DEFAULTS",
    "MANAGED",
    "METHODS",
    "SFT_DEFAULTS",
    "bool_word",
    "default_value",
    "defaults",
    "field_names",
    "normalise",
    "one_line",
    "shown",
    "trl_config_class",
    "unknown_key_errors",
    "validation_errors",
]
