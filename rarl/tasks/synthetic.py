"""The synthetic source: seeded shapes for the offline demo and the tests, as a task like the benchmarks.

The generator (:mod:`rarl.data.synthetic`) is generic data code; what makes it a source is this module:
its loader (``spec.num_samples`` samples of ``spec.split``, seeded by ``spec.seed``; the generator sets
each question type) and its scoring, the defaults of :class:`~rarl.tasks.base.Task` (one reference answer,
no official metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rarl.schema.sample import Sample
from rarl.tasks.base import Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec


def load_synthetic(spec: DatasetSpec) -> list[Sample]:
    """``spec.num_samples`` synthetic samples of ``spec.split`` seeded by ``spec.seed``."""
    from rarl.data.synthetic import generate_samples

    return generate_samples(spec.num_samples, seed=spec.seed, split=spec.split)


TASK = Task("synthetic", load=load_synthetic)

__all__ = ["TASK", "load_synthetic"]
