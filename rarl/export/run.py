"""``rarl export`` end to end: find the adapter and its run, merge, write the directory and its card."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rarl.export.card import build_model_card, find_results
from rarl.export.merge import export_processor, find_source, merged_model, write_model_dir

log = logging.getLogger(__name__)


def run_export(
    run: str | Path,
    out: str | Path,
    *,
    adapter: str | Path | None = None,
    results: Sequence[str | Path] = (),
    dtype: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    private: bool = False,
) -> dict[str, Any]:
    """Merge the adapter of ``run`` (or ``adapter``) into its base and write ``out`` with a model card;
    push it when ``push_to_hub`` names a repository. Returns what was written."""
    source = find_source(run, adapter)
    evaluations = find_results(results, source.adapter_dir)  # before the merge: a missing one fails now
    config = source.run_config
    method = config.train.method if config is not None else "fine-tune"
    train_datasets = [
        (spec.name or spec.path or spec.source, spec.path if spec.source == "hf" else None)
        for spec in (config.data.train if config is not None else [])
    ]
    card = build_model_card(
        name=name or (push_to_hub or Path(out).name),
        base_model=source.model.name_or_path,
        method=method,
        adapter_config=source.adapter_config,
        train_datasets=train_datasets,
        runs=evaluations,
        adapter_dir=str(source.adapter_dir),
    )
    model = merged_model(source, dtype=dtype or source.model.dtype)
    processor = export_processor(source)
    target = write_model_dir(model, processor, out, overwrite=overwrite, card=card)
    summary: dict[str, Any] = {
        "out": str(target),
        "base_model": source.model.name_or_path,
        "adapter": str(source.adapter_dir),
        "results": [str(file) for file, _ in evaluations],
        "eval_results": len(card.data.eval_results or []),
    }
    if push_to_hub:
        from rarl.export.hub import push_folder

        summary["pushed"] = push_folder(target, push_to_hub, private=private)
    return summary


__all__ = ["run_export"]
