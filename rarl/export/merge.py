"""Merge a LoRA adapter into its base model and write a directory transformers and vLLM load standalone.

Why: an adapter needs PEFT and its base at load time; serving (``vllm serve``), sharing and most tools
expect one model directory. PEFT's ``merge_and_unload`` adds ``B·A·alpha/r`` into each targeted weight, so
the merged model computes what base + adapter computed (to rounding in the export dtype). The processor
goes with it carrying the run's pixel budget — the processor saved with the adapter when there is one,
else the base's with the run config's ``model.min_pixels``/``max_pixels`` — written both as transformers
5 saves it (``processor_config.json``) and as a ``preprocessor_config.json`` with ``min_pixels`` /
``max_pixels`` / ``size``, the file Qwen2-VL's hub release carries and older loaders read.

The directory is written into a temporary sibling and renamed into place when complete, so an
interrupted export never leaves a half-written model where a server would load it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rarl.config import ModelConfig, RunConfig, load_config
from rarl.errors import UserError
from rarl.io import atomic_write_json

log = logging.getLogger(__name__)

RESOLVED_CONFIG = "resolved_config.yaml"
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


@dataclass(frozen=True)
class ExportSource:
    """What an export merges: the adapter directory, the run config it was trained with (when found), the
    base model's settings, and where its processor comes from."""

    adapter_dir: Path
    run_config: RunConfig | None
    model: ModelConfig
    adapter_config: dict[str, Any]
    processor_dir: Path | None  # the processor saved with the adapter (None: the base's)


def _run_config_near(adapter_dir: Path) -> RunConfig | None:
    """``resolved_config.yaml`` of the run: beside the adapter (a run's output dir) or one level up (a
    ``checkpoint-N`` inside it)."""
    for folder in (adapter_dir, adapter_dir.parent):
        path = folder / RESOLVED_CONFIG
        if path.is_file():
            return load_config(path)
    return None


def find_source(run: str | Path, adapter: str | Path | None = None) -> ExportSource:
    """Resolve ``--run`` (a training output dir or a ``checkpoint-N`` dir) and ``--adapter`` into what to
    merge; one-line errors for a directory without an adapter or a base that cannot be named."""
    from rarl.models.loading import check_adapter_dir

    run_dir = Path(run)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such training run or checkpoint directory")
    adapter_dir = Path(adapter) if adapter else run_dir
    if not (adapter_dir / "adapter_config.json").is_file():
        if adapter is None and any(run_dir.glob("checkpoint-*")):
            raise UserError(
                f"{run_dir}: no final adapter here (adapter_config.json); name a checkpoint: "
                f"--run {run_dir}/checkpoint-N, or --adapter DIR"
            )
        raise UserError(
            f"{adapter_dir}: no adapter_config.json here: rarl export merges a LoRA adapter (a run trained "
            "without LoRA already is a full model directory)"
        )
    check_adapter_dir(adapter_dir)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    config = _run_config_near(adapter_dir) or _run_config_near(run_dir)
    if config is not None:
        model = replace(config.model, adapter_path=None)
    else:
        base = adapter_config.get("base_model_name_or_path")
        if not base:
            raise UserError(
                f"{adapter_dir}: no {RESOLVED_CONFIG} beside it and no base_model_name_or_path in its "
                "adapter_config.json: the base model cannot be named"
            )
        model = ModelConfig(name_or_path=str(base))
        log.warning("%s: no %s; merging onto %s with default settings", adapter_dir, RESOLVED_CONFIG, base)
    processor_dir = next(
        (folder for folder in (adapter_dir, run_dir) if any((folder / n).is_file() for n in PROCESSOR_FILES)),
        None,
    )
    return ExportSource(adapter_dir, config, model, adapter_config, processor_dir)


def merged_model(source: ExportSource, dtype: str = "auto", device: str = "cpu") -> Any:
    """The base with the adapter merged in (``merge_and_unload``), on ``device``, in ``dtype``."""
    from rarl.models.loading import load_model

    model_config = replace(
        source.model, dtype=dtype, adapter_path=str(source.adapter_dir), gradient_checkpointing=False
    )
    model = load_model(model_config, device=device)
    merged = model.merge_and_unload()
    merged.eval()
    return merged


def export_processor(source: ExportSource) -> Any:
    """The processor to ship: saved with the adapter when it was, else the base's; the run's pixel budget
    set on it either way (a processor saved by rarl already carries it)."""
    from rarl.models.loading import load_processor

    path = str(source.processor_dir) if source.processor_dir else None
    return load_processor(source.model, model_path=path)


def write_preprocessor_config(processor: Any, folder: Path) -> None:
    """``preprocessor_config.json`` with the budget as Qwen2-VL's hub file states it (``min_pixels``,
    ``max_pixels``) and as transformers 5 does (``size``), beside transformers' own processor files."""
    image = processor.image_processor
    size = dict(image.size) if image.size is not None else {}
    data = json.loads(image.to_json_string())
    data.update(
        {
            "size": {"shortest_edge": size.get("shortest_edge"), "longest_edge": size.get("longest_edge")},
            "min_pixels": size.get("shortest_edge"),
            "max_pixels": size.get("longest_edge"),
        }
    )
    data.setdefault("processor_class", type(processor).__name__)
    atomic_write_json(folder / "preprocessor_config.json", data)


def write_model_dir(
    model: Any, processor: Any, out: str | Path, *, overwrite: bool = False, card: Any = None
) -> Path:
    """Save ``model`` and ``processor`` (and the model card, ``README.md``) as one directory, atomically:
    written into a temporary sibling, then renamed to ``out``. An existing ``out`` is refused unless
    ``overwrite`` (then replaced only once the new directory is complete)."""
    target = Path(out)
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise UserError(f"{target}: already exists; pass --overwrite to replace it, or choose another --out")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        write_preprocessor_config(processor, staging)
        if card is not None:
            card.save(staging / "README.md")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(old / target.name)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


__all__ = [
    "ExportSource",
    "export_processor",
    "find_source",
    "merged_model",
    "write_model_dir",
    "write_preprocessor_config",
]
