"""Datasets, benchmark-free: the helpers every loader shares, images, synthetic data, the audit and the
token budget.

The loaders themselves live with their benchmarks in :mod:`rarl.tasks` (one module each), and so does the
one entry point that loads a configured dataset, :func:`rarl.tasks.loading.load_dataset_spec`; this layer
sits below them and knows no benchmark. Here: the seeded subsample, the counts per question type and the
unique ids that entry point applies to every source.
"""

from __future__ import annotations

import logging
import random
from collections import Counter

from rarl.schema.sample import QUESTION_TYPES, QuestionType, Sample

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


def make_ids_unique(samples: list[Sample], name: str, split: str) -> None:
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


__all__ = ["QUESTION_TYPES", "QuestionType", "Sample", "count_types", "make_ids_unique", "subsample"]
