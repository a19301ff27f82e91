"""Loading one configured dataset: dispatch on ``spec.source``, then naming, ids and the seeded subsample.

Why here: the dispatch needs every task's loader (:data:`rarl.tasks.TASKS`), and the data layer below must
not know the benchmarks. :func:`load_dataset_spec` is the one entry point the trainer, the evaluator and
``rarl data inspect``/``audit`` use: it dispatches, names the result, records each sample's ``benchmark``,
makes ids unique, applies the seeded ``spec.limit`` subsample and logs the counts per question type, so
every run's log states exactly what data it saw. Every loader takes a :class:`~rarl.config.DatasetSpec`
and returns samples in file order. :func:`guess_source` tells a bare path's source from the benchmarks'
official file names (``rarl data inspect PATH`` without ``--source``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
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


def guess_source(path: str) -> str:
    """The source a bare path most likely is, from the official file names of the benchmarks' layouts
    (what ``rarl data inspect``/``audit`` use without ``--source``); UserError when it cannot tell.

    One function rather than a hook per task: the checks overlap (a SLAKE folder and a reasoning JSONL
    folder both hold JSON), so their order is the rule, and it is read here in one place."""
    if path == "synthetic":
        return "synthetic"
    target = Path(path)
    if not target.exists():
        raise UserError(f"{target}: not found (give a config .yaml, a dataset path, or 'synthetic')")
    names = {p.name for p in target.iterdir()} if target.is_dir() else {target.name}
    joined = " ".join(sorted(names))
    if "VQA_RAD" in joined:
        return "vqa_rad"
    if "All_QA_Pairs" in joined or "VQAMed2019" in joined or "ImageClef-2019" in joined:
        return "vqa_med_2019"
    if "pvqa" in names or "_qa.pkl" in joined or {"qas", "images"} <= names or "pvqa_" in joined:
        return "pathvqa"
    if target.is_dir() and "baselines" in names and next(target.rglob("pvqa_*.json"), None):
        return "pathvqa"  # the official repository's LXMERT-format question files
    if {"trainset.json", "testset.json"} & names:
        return "vqa_rad"  # MEVF's data_RAD/ split
    if "Slake1.0" in names:
        return "slake"
    if "test_2d.parquet" in names or "test_3d.parquet" in names:
        return "cvbench"
    if target.is_dir() and "imgs" in names and ({"train.json", "test.json"} & names):
        return "slake"
    jsonl = (
        [target] if target.suffix == ".jsonl" else sorted(target.glob("*.jsonl")) if target.is_dir() else []
    )
    if jsonl:
        return "cvbench" if _looks_like_cvbench(jsonl[0]) else "reasoning_jsonl"
    if target.suffix == ".parquet" or (target.is_dir() and next(target.rglob("*.parquet"), None)):
        return "parquet"
    raise UserError(
        f"{target}: cannot tell the dataset format; pass --source (one of {', '.join(SOURCE_NAMES)})"
    )


def _looks_like_cvbench(path: Path) -> bool:
    """CV-Bench JSONL rows carry ``task`` and ``choices``; reasoning JSONL rows do not have ``task``."""
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        row = json.loads(first.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return False  # the loader names the file and line
    return isinstance(row, dict) and "task" in row and "choices" in row


__all__ = ["GENERIC_LOADERS", "guess_source", "load_dataset_spec", "load_hf", "load_source", "loader_for"]
