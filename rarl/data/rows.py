"""Row validation shared by every loader: typed field access, image checks, bad-row accounting.

Why: real benchmark files have missing images, empty answers and numbers where strings belong. A loader
must either stop with an error that names the file, the row and the field (default) or, with
``skip_bad``, skip the row and *say so* with a count and the first few reasons. Nothing is dropped
silently. Keeping that policy in one place makes every loader behave the same.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarl.data.schema import QUESTION_TYPES, QuestionType, Sample
from rarl.errors import DataError

log = logging.getLogger("rarl.data")


class BadRow(Exception):
    """Raised inside a row parser; :meth:`RowCollector.row` turns it into a DataError or a skip."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def text(record: dict[str, Any], key: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
    """The string value of ``record[key]``; numbers are accepted as text (VQA-RAD stores some counts as ints).

    Missing or null → ``None`` when not ``required``; lists, dicts and booleans are errors, as is an empty
    string unless ``allow_empty``.
    """
    value = record.get(key)
    if value is None:
        if required:
            raise BadRow(key, "missing" if key not in record else "is null")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow(key, f"expected a string, got {type(value).__name__} {value!r:.60}")
    result = str(value).strip()
    if not result and not allow_empty:
        if required:
            raise BadRow(key, "is empty")
        return None
    return result


def image_file(base: Path, name: str, key: str) -> str:
    """Resolve an image name against ``base`` and check the file exists (error names the field)."""
    path = Path(name)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise BadRow(key, f"image file not found: {path}")
    return str(path)


def question_type_of(value: str | None, answer: str, key: str = "answer_type") -> str:
    """Map a source's answer type (CLOSED/OPEN/choice, any case) to ours; ``None`` → the closed-type rule."""
    if value is None:
        from rarl.answers import infer_question_type

        return infer_question_type(answer)
    lowered = value.strip().lower()
    if lowered in QUESTION_TYPES:
        return lowered
    raise BadRow(key, f"unknown answer type {value!r}; expected one of closed, open, choice")


@dataclass
class RowCollector:
    """Accumulates samples from one file; applies the error-or-skip policy and reports counts."""

    path: str
    skip_bad: bool = False
    samples: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    inferred_types: int = 0  # rows whose question type came from the closed-type rule
    filtered: Counter[str] = field(default_factory=Counter)  # rows left out on purpose (e.g. non-English)

    def question_type(self, value: str | None, answer: str, key: str = "answer_type") -> QuestionType:
        """:func:`question_type_of`, counting the rows that fall back on the closed-type rule."""
        if value is None:
            self.inferred_types += 1
        return question_type_of(value, answer, key)  # type: ignore[return-value]

    def bad(self, row: int | str, error: BadRow) -> None:
        """Handle one bad row: raise a DataError, or record the skip when ``skip_bad`` is on."""
        if not self.skip_bad:
            raise DataError(self.path, row, error.field, error.problem)
        where = f"row {row}" + (f", field '{error.field}'" if error.field else "")
        self.skipped.append(f"{where}: {error.problem}")

    def report(self, dataset: str, split: str, rule_note: str | None = None) -> None:
        """Log counts per question type, inferred types (with the rule), filtered and skipped rows."""
        counts = Counter(sample.question_type for sample in self.samples)
        types = ", ".join(f"{qtype} {counts.get(qtype, 0)}" for qtype in QUESTION_TYPES)
        log.info("%s/%s from %s: %d rows loaded (%s)", dataset, split, self.path, len(self.samples), types)
        if self.inferred_types:
            rule = rule_note or "closed when the answer is yes/no, otherwise open"
            log.info(
                "%s/%s: question type inferred for %d rows (rule: %s)",
                dataset,
                split,
                self.inferred_types,
                rule,
            )
        for reason, count in sorted(self.filtered.items()):
            log.info("%s/%s: %d rows filtered out (%s)", dataset, split, count, reason)
        if self.skipped:
            log.warning(
                "%s/%s: skipped %d bad rows (skip_bad); first: %s",
                dataset,
                split,
                len(self.skipped),
                "; ".join(self.skipped[:3]),
            )


__all__ = ["BadRow", "RowCollector", "image_file", "question_type_of", "text"]
