"""Per-item scores: one row per item and metric, the contract between scoring and everything downstream.

Why: a benchmark's scorer decides an item's outcome once, where it is defined (``rarl eval`` /
``rarl judge``), and writes it to ``scores.jsonl``; the report's paired and subgroup tables and the
judge-vs-rule agreement read these rows instead of re-deciding outcomes from the predictions. Each row
carries its grouping fields (dataset label, split, question type, benchmark, modality, organ, CV-Bench task
and source), so any table is a grouping of rows.

Metric names: ``rarl.*``, ``official.*``, ``llava_med.*`` (see :mod:`rarl.eval.metrics`) and
``judge.<name>.final`` / ``judge.<name>.reasoning`` (a failed judgement is 0, as in the judge's
percentages; a reasoning score the judge does not give, e.g. without a reference reasoning, is ``None``).
``value`` ``None``: the scorer leaves the item out of that metric's denominator.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rarl.io import atomic_write_text, json_line, read_jsonl
from rarl.schema.records import from_known_fields

SCORES_FILE = "scores.jsonl"


@dataclass(frozen=True)
class ScoreRow:
    """One item's score under one metric, with the fields tables group by."""

    key: str  # PredictionRecord.key
    metric: str
    value: float | None
    label: str  # the dataset's row label in tables (dataset, or dataset/split when it has several)
    dataset: str
    split: str
    question_type: str
    benchmark: str | None = None
    modality: str | None = None
    organ: str | None = None
    task: str | None = None
    source: str | None = None
    failed: bool = False  # a judge row whose judgement failed (its value is 0: it stays in the denominator)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreRow:
        return from_known_fields(cls, data)


def write_scores(path: str | os.PathLike[str], rows: Iterable[ScoreRow]) -> Path:
    """All score rows of a run (rewritten atomically: derived data, rebuilt by every eval/judge)."""
    return atomic_write_text(path, "".join(json_line(row.to_dict()) + "\n" for row in rows))


def read_scores(path: str | os.PathLike[str]) -> list[ScoreRow]:
    return [ScoreRow.from_dict(row) for row in read_jsonl(path)]


def outcomes(rows: Sequence[ScoreRow], metric: str) -> dict[str, float]:
    """key → value of one metric (items the metric leaves out are absent)."""
    return {row.key: row.value for row in rows if row.metric == metric and row.value is not None}


__all__ = ["SCORES_FILE", "ScoreRow", "outcomes", "read_scores", "write_scores"]
