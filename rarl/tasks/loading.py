"""Loading one configured dataset: dispatch on ``spec.source``, then naming, ids and the seeded subsample.

Why here: the dispatch needs every task's loader (:data:`rarl.tasks.TASKS`), and the data layer below must
not know the benchmarks. :func:`load_dataset_spec` is the one entry point the trainer, the evaluator and
``rarl data inspect``/``audit`` use: it dispatches, names the result, records each sample's ``benchmark``,
makes ids unique, applies the seeded ``spec.limit`` subsample and logs the counts per question type, so
every run's log states exactly what data it saw. Every loader takes a :class:`~rarl.config.DatasetSpec`
and returns samples in file order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from rarl.data import count_types, make_ids_unique, subsample
from rarl.data.loaders.tables import load_hf_table, load_parquet
from rarl.errors import UserError
from rarl.schema.sample import Sample
from rarl.schema.sources import SOURCE_NAMES
from rarl.tasks import HUB_DATASETS, TASKS

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

log = logging.getLogger("rarl.data")

Loader = Callable[["DatasetSpec"], list[Sample]]


def load_hf(spec: DatasetSpec) -> list[Sample]:
    """Source ``hf``: a hub id whose schema a task knows (:data:`rarl.tasks.HUB_DATASETS`) goes to that
    task's loader, so ``{source: hf, path: nyu-visionx/CV-Bench}`` needs no column map; anything else is
    read as a generic table with ``column_map``."""
    known = _known_hub_copy(spec)
    if known:
        return loader_for(known)(spec)
    return load_hf_table(spec)


# the sources without a task module (rarl.schema.sources): generic tables mapped by column_map
GENERIC_LOADERS: dict[str, Loader] = {"hf": load_hf, "parquet": load_parquet}


def loader_for(source: str) -> Loader:
    """The loader of a source name: its task's, or a generic table's; UserError naming the valid ones."""
    task = TASKS.get(source)
    if task is not None and task.load is not None:
        return task.load
    if source in GENERIC_LOADERS:
        return GENERIC_LOADERS[source]
    raise UserError(f"unknown data source '{source}'; valid options: {', '.join(SOURCE_NAMES)}")


def load_source(spec: DatasetSpec) -> list[Sample]:
    """Dispatch on ``spec.source`` (names from :data:`rarl.schema.sources.SOURCE_NAMES`)."""
    return loader_for(spec.source)(spec)


def _known_hub_copy(spec: DatasetSpec) -> str | None:
    """The source a ``{source: hf}`` spec really is when its path is a known hub id and no column map is
    given (a column map means the user reads it as a generic table)."""
    if spec.source != "hf" or spec.column_map:
        return None
    return HUB_DATASETS.get((spec.path or "").lower())


def load_dataset_spec(spec: DatasetSpec) -> list[Sample]:
    """Load one configured dataset as Samples: dispatch by source, then the seeded ``limit`` subsample."""
    samples = load_source(spec)
    name = spec.name or spec.source
    benchmark = _known_hub_copy(spec) or spec.source  # a known hub copy is that benchmark (see load_hf)
    for sample in samples:
        sample.dataset = name
        sample.benchmark = benchmark
    make_ids_unique(samples, name, spec.split)
    total = len(samples)
    samples = subsample(samples, spec.limit, spec.seed)
    if len(samples) != total:
        log.info(
            "%s/%s: seeded subsample (seed %d) of %d out of %d",
            name,
            spec.split,
            spec.seed,
            len(samples),
            total,
        )
    types = ", ".join(f"{k} {v}" for k, v in count_types(samples).items())
    log.info("%s/%s: %d samples (%s)", name, spec.split, len(samples), types)
    return samples


__all__ = ["GENERIC_LOADERS", "load_dataset_spec", "load_hf", "load_source", "loader_for"]
