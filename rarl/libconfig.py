"""The run configuration as the libraries' own objects: ``trl.GRPOConfig`` / ``trl.SFTConfig`` and
``peft.LoraConfig``, built once where a run starts.

Why one place: ``load_config`` has already checked the mapping (TRL's field names and annotations, and the
few rules no library checks: :mod:`rarl.trl_schema`); what is left is what only the libraries know
(TRL's ``__post_init__`` rules, such as whole groups per generation round) and what depends on the machine
(``use_cpu``, ``bf16``/``fp16``). Both are settled here, by the libraries' own parsers
(``transformers.HfArgumentParser.parse_dict``, the dict path of the ``TrlParser`` that TRL's own scripts and
open-r1 use, and ``peft.LoraConfig``), and the trainer builders receive the result: they never look at
``config.train`` again. Commands that never train (judge, report, review, data inspect) never build, so
they never import TRL's trainer stack.

The config's one path: YAML -> :func:`rarl.config.load_config` (mapping checked, every error at once) ->
:func:`library_configs` (the libraries' objects) -> ``rarl.train.grpo.build_grpo_trainer`` /
``rarl.train.sft.build_sft_trainer`` -> ``trl.GRPOTrainer`` / ``trl.SFTTrainer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rarl.devices import default_device, resolve_dtype
from rarl.errors import UserError
from rarl.trl_schema import default_value, one_line, trl_config_class

if TYPE_CHECKING:
    from peft import LoraConfig

    from rarl.config import LoraSettings, RunConfig

# LoRA must touch only the language model: Qwen2-VL's vision blocks use fused `qkv`/`proj`, but a regex on
# the module path makes the restriction explicit instead of relying on that naming accident.
LANGUAGE_MODEL_PATTERN = r".*language_model.*\.({modules})$"


@dataclass(frozen=True)
class LibraryConfigs:
    """What a trainer is built from: TRL's arguments and PEFT's LoRA config (None: full fine-tuning)."""

    method: str
    args: Any  # trl.GRPOConfig or trl.SFTConfig
    lora: Any  # peft.LoraConfig or None


def lora_config(settings: LoraSettings) -> LoraConfig:
    """PEFT config restricted to the language model's projections named in ``settings.target_modules``."""
    from peft import LoraConfig

    modules = "|".join(sorted(settings.target_modules))
    try:
        return LoraConfig(
            r=settings.r,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=LANGUAGE_MODEL_PATTERN.format(modules=modules),
            task_type="CAUSAL_LM",
            bias="none",
        )
    except (ValueError, TypeError) as exc:
        raise UserError(f"lora: peft.LoraConfig rejects these settings: {one_line(exc)}") from None


def precision_flags(dtype: str, device: str) -> dict[str, bool]:
    """bf16/fp16 mixed precision matching the weights ``model.dtype`` loads on ``device`` (none on CPU)."""
    if device != "cuda":
        return {"bf16": False, "fp16": False}
    resolved = str(resolve_dtype(dtype, device)).removeprefix("torch.")
    return {"bf16": resolved == "bfloat16", "fp16": resolved == "float16"}


def trainer_settings(config: RunConfig, device: str | None = None) -> dict[str, Any]:
    """The keyword arguments of ``trl.<Method>Config``: ``train.<method>`` as written, plus what rarl knows
    and the mapping cannot (each only unless the mapping sets it): where to run (``use_cpu``), mixed
    precision matching ``model.dtype`` on that device, and ``data_seed = seed`` (the data order follows
    ``seed`` even when something else reseeded torch since); always: gradient checkpointing from
    ``model.gradient_checkpointing`` (the model loader enables it, so the trainer must agree) and, for
    GRPO, the reward weights from ``reward.weights``."""
    method = config.train.method
    device = device or default_device()
    settings = dict(config.train.settings)
    settings.setdefault("use_cpu", device == "cpu")
    settings.setdefault("data_seed", settings.get("seed", default_value(method, "seed")))
    for flag, value in precision_flags(config.model.dtype, "cpu" if settings["use_cpu"] else device).items():
        settings.setdefault(flag, value)
    if settings.get("report_to") == []:
        settings["report_to"] = "none"
    checkpointing = config.model.gradient_checkpointing
    # transformers 5 names; the deprecated ``gradient_checkpointing`` alias (which TRL reads, and which TRL's
    # configs default to True) mirrors them. Off unless asked for: it trades ~20% speed for memory.
    settings["activation_checkpointing"] = checkpointing
    settings["activation_checkpointing_kwargs"] = {"use_reentrant": False} if checkpointing else None
    if method == "grpo":
        settings["reward_weights"] = [float(weight) for weight in config.reward.weights]
    return settings


def library_configs(config: RunConfig, device: str | None = None) -> LibraryConfigs:
    """``config`` as ``trl.GRPOConfig``/``trl.SFTConfig`` and ``peft.LoraConfig``, built by the libraries.

    ``config`` must be validated (``load_config`` does it; a config built in code calls ``validate()``).
    A rejection by TRL or PEFT (e.g. a generation round that is not whole groups of ``num_generations``)
    is one :class:`UserError` line naming the section.
    """
    from transformers import HfArgumentParser

    method = config.train.method
    cls = trl_config_class(method)
    try:
        (args,) = HfArgumentParser(cls).parse_dict(trainer_settings(config, device))
    except (ValueError, TypeError) as exc:
        problem = f"train.{method}: trl.{cls.__name__} rejects these settings: {one_line(exc)}"
        raise UserError(problem) from None
    lora = lora_config(config.lora) if config.lora.enabled else None
    return LibraryConfigs(method=method, args=args, lora=lora)


__all__ = [
    "LANGUAGE_MODEL_PATTERN",
    "LibraryConfigs",
    "library_configs",
    "lora_config",
    "precision_flags",
    "trainer_settings",
]
