"""Datasets: one :class:`~rarl.schema.sample.Sample` schema, a loader per source, images, synthetic data.

:func:`load_dataset_spec` is the one entry point the trainer, the evaluator and ``rarl data inspect`` use:
it dispatches on ``spec.source``, names the result, applies the seeded ``spec.limit`` subsample and logs
the counts per question type, so every run's log states exactly what data it saw.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import TYPE_CHECKING

from rarl.schema.sample import QUESTION_TYPES, QuestionType, Sample

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

log = logging.getLogger(__name__)


def subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """A seeded subsample of ``limit`` samples in their original order (the paper's 500/1,000/5,000)."""
    if limit is None or limit >= len(samples):
        return samples
    if limit < 0:
        from rarl.errors import UserError

        raise UserError(f"data limit must be >= 0, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]


def count_types(samples: list[Sample]) -> dict[str, int]:
    """Samples per question type (closed/open/choice), all three keys always present."""
    counts = Counter(sample.question_type for sample in samples)
    return {qtype: counts.get(qtype, 0) for qtype in QUESTION_TYPES}


def _make_ids_unique(samples: list[Sample], name: str, split: str) -> None:
    """Suffix repeated ids (``id#2``…): predictions and ratings are keyed by dataset/split/id.

    A suffixed id never takes one the file already uses: rows ``a, a, a#2`` become ``a, a#3, a#2``, not
    two ``a#2``. The result depends only on the file's order, so a rerun gives every row the same id.
    """
    taken = {sample.id for sample in samples}
    seen: set[str] = set()
    renamed = 0
    for sample in samples:
        if sample.id in seen:
            number = 2
            while f"{sample.id}#{number}" in taken:
                number += 1
            sample.id = f"{sample.id}#{number}"
            taken.add(sample.id)
            renamed += 1
        seen.add(sample.id)
    if renamed:
        log.warning("%s/%s: %d repeated ids made unique with a '#n' suffix", name, split, renamed)


def load_dataset_spec(spec: DatasetSpec) -> list[Sample]:
    """Load one configured dataset as Samples: dispatch by source, then the seeded ``limit`` subsample."""
    from rarl.data.loaders import load_source

    samples = load_source(spec)
    name = spec.name or spec.source
    from rarl.schema.sources import HUB_DATASETS

    benchmark = spec.source
    if spec.source == "hf" and not spec.column_map:  # a known hub copy is that benchmark (see load_hf)
        benchmark = HUB_DATASETS.get((spec.path or "").lower(), spec.source)
    for sample in samples:
        sample.dataset = name
        sample.benchmark = benchmark
    _make_ids_unique(samples, name, spec.split)
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


__all__ = ["QUESTION_TYPES", "QuestionType", "Sample", "count_types", "load_dataset_spec", "subsample"]
