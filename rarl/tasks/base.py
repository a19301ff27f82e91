"""The shape of a benchmark task: its reference rule, its per-item official metrics, its aggregate.

Metric names say which scorer made a number (docs/evaluation.md, "Metric families"):

* ``rarl.*`` — rarl's own normalised matching (:mod:`rarl.answers`, shared with the accuracy reward); a
  defensible choice but rarl's, *not comparable with published numbers*;
* ``official.*`` — the benchmark's own scorer, where the benchmark defines one (here, in its module);
* ``llava_med.*`` — LLaVA-Med's closed accuracy / open recall (:mod:`rarl.metrics.llava_med`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rarl.schema.results import MetricBlock
from rarl.schema.scores import ScoreRow


class ScoredRecord(Protocol):
    """What a task's scorer reads of a prediction record."""

    question_type: str
    reference_answer: str
    pred_answer: str
    extra: dict[str, Any]


def single_reference(reference: str) -> list[str]:
    """The default reference rule: the reference is one answer, taken as written."""
    return [reference]


if TYPE_CHECKING:
    from rarl.config import DatasetSpec
    from rarl.schema.sample import Sample


@dataclass(frozen=True)
class Task:
    """A benchmark as rarl scores it.

    ``reference_forms``: the accepted answers a reference stands for (natural text); ``item_metrics``:
    the benchmark's official per-item scores (``{"official.accuracy": 1.0, ...}``, ``None`` = not scored);
    ``aggregate``: dataset-level official numbers that are not means of item scores (CV-Bench's combined
    score), given the items' ``rarl.accuracy`` score rows (which carry the grouping fields it needs).
    """

    name: str
    # the source's loader (official layouts and hub copies), the Samples of one spec in file order; and
    # the hub dataset ids (lower case) whose columns it knows, so ``{source: hf, path: <id>}`` reaches it
    load: Callable[[DatasetSpec], list[Sample]] | None = None
    hub_ids: tuple[str, ...] = ()
    reference_forms: Callable[[str], list[str]] = single_reference
    item_metrics: Callable[[ScoredRecord], dict[str, float | None]] | None = None
    aggregate: Callable[[Sequence[ScoreRow]], MetricBlock | None] | None = None


GENERIC = Task("generic")

__all__ = ["GENERIC", "ScoredRecord", "Task", "single_reference"]
