"""Stored memory predictions, found again by the step they describe.

Why: simulating one 2B GRPO step costs CPU minutes, so ``rarl train``'s pre-flight cannot afford to run
it on a rented GPU by default — but it can look an answer up. Every prediction ``rarl bench memory``
makes is kept under the digest of the step it simulated (:func:`step_digest`: the model, LoRA, rewards,
prompt and TRL settings after the step's shape is applied — not datasets, output paths or run length),
in the user's cache (:func:`cache_dir`); the tables committed under ``benchmarks/`` carry the same digest
per row. The pre-flight then answers for any config whose step was predicted before, on this machine or
in the committed tables, in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.train.memory.predict import StepShape, prediction_config

if TYPE_CHECKING:
    from rarl.config import RunConfig

# Settings that cannot change a step's memory: where data comes from and goes to, how long a run is.
IRRELEVANT_GRPO = ("output_dir", "num_train_epochs", "save_steps", "logging_steps", "report_to", "max_steps")
CACHE_VARIABLE = "RARL_CACHE_DIR"


def step_key(run: RunConfig) -> str:
    """What decides a step's memory: the model, LoRA, rewards, prompt settings and TRL's settings (not the
    datasets, evaluation or output paths), as canonical JSON, so presets that differ only there share it."""
    from rarl.config import to_dict

    data = to_dict(run)
    data["data"] = {k: v for k, v in data["data"].items() if k not in ("train", "eval")}
    data["train"]["grpo"] = {k: v for k, v in data["train"]["grpo"].items() if k not in IRRELEVANT_GRPO}
    return json.dumps({k: data[k] for k in ("model", "lora", "reward", "data", "train")}, sort_keys=True)


def config_shape(config: RunConfig) -> StepShape:
    """The step shape a training run of ``config`` has: its own G, completion length and image budget."""
    grpo = config.train.grpo
    return StepShape(
        num_generations=int(grpo.get("num_generations", 8)),
        max_completion_length=int(grpo.get("max_completion_length", 256)),
        image_size=math.isqrt(int(config.model.max_pixels)),
    )


def step_digest(
    config: RunConfig, shape: StepShape, attention_kernels: str = "cuda", target_device: str = "cuda"
) -> str:
    """The digest a prediction of ``config`` at ``shape`` is stored under (16 hex digits)."""
    run = prediction_config(config, shape, Path("step"))
    text = json.dumps(
        {"step": step_key(run), "kernels": attention_kernels, "device": target_device}, sort_keys=True
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_dir() -> Path:
    """``$RARL_CACHE_DIR/memory``, else ``$XDG_CACHE_HOME/rarl/memory``, else ``~/.cache/rarl/memory``."""
    root = os.environ.get(CACHE_VARIABLE)
    if root:
        return Path(root) / "memory"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "rarl" / "memory"


def store_prediction(row: dict[str, Any]) -> Path | None:
    """Keep an ``ok`` row of ``rarl bench memory`` in the cache under its ``step_digest`` (atomic write);
    returns the file, or None when the row has no digest or the cache cannot be written."""
    from rarl.io import atomic_write_json

    digest = row.get("step_digest")
    if row.get("status") != "ok" or not digest:
        return None
    try:
        return atomic_write_json(cache_dir() / f"{digest}.json", row)
    except OSError:  # a read-only home must not fail the benchmark that made the prediction
        return None


def committed_tables() -> list[Path]:
    """The prediction tables committed beside the package (a source checkout; none in a wheel)."""
    folder = Path(__file__).resolve().parents[3] / "benchmarks"
    return sorted(folder.glob("memory_predicted*.json")) if folder.is_dir() else []


def find_prediction(digest: str, tables: list[Path] | None = None) -> tuple[dict[str, Any], str] | None:
    """A stored ``ok`` row for ``digest`` and where it came from: the cache first (this machine's own
    versions), then the committed tables; None when the step was never predicted."""
    cached = cache_dir() / f"{digest}.json"
    try:
        row = json.loads(cached.read_text(encoding="utf-8"))
        if row.get("status") == "ok" and row.get("step_digest") == digest:
            return row, str(cached)
    except (OSError, ValueError):
        pass
    for table in committed_tables() if tables is None else tables:
        try:
            rows = json.loads(table.read_text(encoding="utf-8")).get("results", [])
        except (OSError, ValueError, AttributeError):
            continue
        for row in rows:
            if isinstance(row, dict) and row.get("status") == "ok" and row.get("step_digest") == digest:
                return row, f"{table.name} row {row.get('name')}"
    return None


__all__ = [
    "IRRELEVANT_GRPO",
    "cache_dir",
    "committed_tables",
    "config_shape",
    "find_prediction",
    "step_digest",
    "step_key",
    "store_prediction",
]
