"""The synthetic source: seeded shapes for the offline demo and the tests, as a task like the benchmarks.

The generator (:mod:`rarl.data.synthetic`) is generic data code; what makes it a source is this module:
its loader (``spec.num_samples`` samples of ``spec.split``, seeded by ``spec.seed``; the generator sets
each question type) and its scoring, the defaults of :class:`~rarl.tasks.base.Task` (one reference answer,
no official metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rarl.errors import UserError
from rarl.schema.sample import Sample
from rarl.tasks.base import Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec


def load_synthetic(spec: DatasetSpec) -> list[Sample]:
    """``spec.num_samples`` synthetic samples of ``spec.split`` seeded by ``spec.seed``, with the spec's
    synthetic options (``kinds``, ``random_answers``, ``reasoning_fraction``, ``paraphrase``, ``think``)."""
    from rarl.data.synthetic import ALL_KINDS, THINKS, generate_samples

    unknown = [kind for kind in spec.kinds if kind not in ALL_KINDS]
    if unknown:
        raise UserError(
            f"data: synthetic kinds: unknown kind(s) {unknown}; valid options: {', '.join(ALL_KINDS)}"
        )
    if spec.think is not None and spec.think not in THINKS:
        raise UserError(f"data: synthetic think: unknown {spec.think!r}; valid options: {', '.join(THINKS)}")
    return generate_samples(
        spec.num_samples,
        seed=spec.seed,
        split=spec.split,
        kinds=spec.kinds or None,
        random_answers=spec.random_answers,
        reasoning_fraction=spec.reasoning_fraction,
        paraphrase=spec.paraphrase,
        think=spec.think,
    )


TASK = Task("synthetic", load=load_synthetic)

__all__ = ["TASK", "load_synthetic"]
