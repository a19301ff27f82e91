"""One loader per dataset source, all producing :class:`~rarl.schema.sample.Sample` lists, under one registry.

Why: the paper evaluates on benchmarks that each ship in their own official layout (VQA-RAD's single JSON
with ``phrase_type`` splits, SLAKE's per-split JSON with Chinese rows mixed in, VQA-Med 2019's pipe files
with ``#`` alternatives, PathVQA pickles or parquet, CV-Bench parquet/JSONL with lettered choices). Each
loader reads the layout as published, validates every row (:mod:`rarl.data.rows`) and logs its counts,
so a user can point a config at the unpacked download and get the same samples the paper used.

One module per benchmark (:mod:`.vqa_rad`, :mod:`.slake`, :mod:`.vqa_med_2019`, :mod:`.pathvqa`,
:mod:`.cvbench`, :mod:`.reasoning_jsonl`, :mod:`.tables`), the shared layout helpers in :mod:`.common`;
this module holds the one registry, :data:`LOADERS`, keyed by the names in
:data:`rarl.schema.sources.SOURCE_NAMES`.

Every loader takes a :class:`~rarl.config.DatasetSpec` and returns samples in file order; naming,
subsampling and the final count line are done by :func:`rarl.data.load_dataset_spec`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rarl.data.loaders.common import load_synthetic, split_files, split_names
from rarl.data.loaders.cvbench import CVBENCH_TASKS, load_cvbench
from rarl.data.loaders.pathvqa import load_pathvqa
from rarl.data.loaders.reasoning_jsonl import load_reasoning_jsonl
from rarl.data.loaders.slake import load_slake, slake_images_by_language
from rarl.data.loaders.tables import load_hf_table, load_parquet
from rarl.data.loaders.vqa_med_2019 import load_vqa_med_2019
from rarl.data.loaders.vqa_rad import load_vqa_rad
from rarl.errors import UserError
from rarl.schema.sample import Sample
from rarl.schema.sources import HUB_DATASETS

if TYPE_CHECKING:
    from rarl.config import DatasetSpec


def load_hf(spec: DatasetSpec) -> list[Sample]:
    """Source ``hf``: a hub id whose schema a named source knows (``HUB_DATASETS``) goes to that source's
    loader, so ``{source: hf, path: nyu-visionx/CV-Bench}`` needs no column map; anything else is read as a
    generic table with ``column_map``. It lives with the registry because it dispatches through it."""
    known = HUB_DATASETS.get((spec.path or "").lower())
    if known and not spec.column_map:
        return LOADERS[known](spec)
    return load_hf_table(spec)


LOADERS: dict[str, Callable[[DatasetSpec], list[Sample]]] = {
    "synthetic": load_synthetic,
    "vqa_rad": load_vqa_rad,
    "slake": load_slake,
    "vqa_med_2019": load_vqa_med_2019,
    "pathvqa": load_pathvqa,
    "cvbench": load_cvbench,
    "reasoning_jsonl": load_reasoning_jsonl,
    "parquet": load_parquet,
    "hf": load_hf,
}


def load_source(spec: DatasetSpec) -> list[Sample]:
    """Dispatch on ``spec.source`` (names from :data:`rarl.schema.sources.SOURCE_NAMES`)."""
    try:
        loader = LOADERS[spec.source]
    except KeyError:
        raise UserError(f"unknown data source '{spec.source}'; valid options: {', '.join(LOADERS)}") from None
    return loader(spec)


__all__ = [
    "CVBENCH_TASKS",
    "LOADERS",
    "load_cvbench",
    "load_hf",
    "load_parquet",
    "load_pathvqa",
    "load_reasoning_jsonl",
    "load_slake",
    "load_source",
    "load_synthetic",
    "load_vqa_med_2019",
    "load_vqa_rad",
    "slake_images_by_language",
    "split_files",
    "split_names",
]
