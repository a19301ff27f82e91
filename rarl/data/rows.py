"""Row validation shared by every loader: typed field access, image checks, bad-row accounting.

Why: real benchmark files have missing images, empty answers and numbers where strings belong. A loader
must either stop with an error that names the file, the row and the field (default) or, with
``skip_bad``, skip the row and *say so* with a count and the first few reasons. Nothing is dropped
silently. Keeping that policy in one place makes every loader behave the same.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarl.errors import DataError
from rarl.io import is_valid_unicode
from rarl.schema.sample import QUESTION_TYPES, QuestionType, Sample

log = logging.getLogger("rarl.data")


class BadRow(Exception):
    """Raised inside a row parser; :meth:`RowCollector.bad` turns it into a DataError or a skip."""

    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class MissingImage(BadRow):
    """A row whose image file is absent. Partial downloads miss thousands at once, so these are summarised
    in one line per file (count + first ids) instead of stopping at the first one."""

    def __init__(self, field: str | None, path: Path) -> None:
        super().__init__(field, f"image file not found: {path}")
        self.path = path


# Zero-width characters: a UTF-8 byte-order mark (U+FEFF) that a file's reader left at the start of its
# first field, zero-width spaces and joiners pasted in from web pages. Invisible, yet they make ids,
# image names and answers differ from what the user sees.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")


def text(record: dict[str, Any], key: str, *, required: bool = True, allow_empty: bool = False) -> str | None:
    """The string value of ``record[key]``; numbers are accepted as text (VQA-RAD stores some counts as ints).

    Missing or null → ``None`` when not ``required``; lists, dicts, booleans and NaN/infinity (what pandas
    writes for an empty cell) are errors, as is an empty string unless ``allow_empty``. Runs of whitespace
    (VQA-RAD's tabs between answer parts, VQA-Med's no-break spaces) become one space and zero-width
    characters (a byte-order mark, zero-width spaces) are dropped: they carry no meaning and would otherwise
    make identical answers differ.
    """
    value = record.get(key)
    if value is None:
        if required:
            raise BadRow(key, "missing" if key not in record else "is null")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow(key, f"expected a string, got {type(value).__name__} {value!r:.60}")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRow(key, f"is {value} (an empty cell in a table?), not a value")
    value = _INVISIBLE.sub("", value) if isinstance(value, str) else value

    result = " ".join(str(value).split())
    if not is_valid_unicode(result):  # "\ud800" in a JSON file: no tokenizer or UTF-8 file can take it
        raise BadRow(key, "holds a lone surrogate (U+D800-U+DFFF), not valid Unicode text")
    if not result and not allow_empty:
        if required:
            raise BadRow(key, "is empty")
        return None
    return result


def identifier(record: dict[str, Any], key: str, default: str) -> str:
    """A row's id from ``record[key]`` as text; ``default`` (built from the row number) when absent, null or
    blank.

    Why strict: predictions, judgements and ratings are keyed by dataset/split/id, so an id must be a
    plain string or number. A list, mapping, boolean or NaN is an error naming the field (``str()`` would
    turn them into ids such as ``"['a']"`` or ``"nan"``, and two NaN rows would collide); a whole float
    (``3.0``, how pandas stores an integer column with a gap) is the integer ``3``.
    """
    value = record.get(key)
    if value is None or (isinstance(value, str) and not _INVISIBLE.sub("", value).strip()):
        return default
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)  # numpy integers from pickled DataFrames
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return text({key: value}, key) or default  # required: text() raises rather than return nothing


def image_file(base: Path, name: str, key: str) -> str:
    """Resolve an image name against ``base``; check the file exists and decodes (errors name the field).

    The decode check is cheap (header, a reduced-size JPEG decode, cached per file) and catches empty,
    truncated, non-image and decompression-bomb files here, where the row is known, instead of after the
    model has loaded.
    """
    from rarl.data.images import image_file_problem

    path = Path(name)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise MissingImage(key, path)
    problem = image_file_problem(path)
    if problem:
        raise BadRow(key, f"{path}: {problem}")
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
    missing_images: list[str] = field(default_factory=list)  # "row N: <file>" for rows whose image is absent

    def question_type(self, value: str | None, answer: str, key: str = "answer_type") -> QuestionType:
        """:func:`question_type_of`, counting the rows that fall back on the closed-type rule."""
        if value is None:
            self.inferred_types += 1
        return question_type_of(value, answer, key)  # type: ignore[return-value]

    def bad(self, row: int | str, error: BadRow) -> None:
        """Handle one bad row: raise a DataError, or record the skip when ``skip_bad`` is on.

        Missing images are collected first and reported together by :meth:`check_missing_images`.
        """
        if isinstance(error, MissingImage):
            self.missing_images.append(f"{Path(error.path).name} (row {row})")
            if not self.skip_bad:
                return
        elif not self.skip_bad:
            raise DataError(self.path, row, error.field, error.problem)
        where = f"row {row}" + (f", field '{error.field}'" if error.field else "")
        self.skipped.append(f"{where}: {error.problem}")

    def check_missing_images(self) -> None:
        """One error for all rows whose image is absent (count + first few), unless ``skip_bad``."""
        if not self.missing_images or self.skip_bad:
            return
        total = len(self.missing_images) + len(self.samples)
        first = ", ".join(self.missing_images[:5])
        raise DataError(
            self.path,
            None,
            None,
            f"{len(self.missing_images)} of {total} rows name an image file that is not there "
            f"(first: {first}); set skip_bad: true (--skip-bad) to load the {len(self.samples)} rows "
            "whose images exist",
        )

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


__all__ = ["BadRow", "MissingImage", "RowCollector", "identifier", "image_file", "question_type_of", "text"]
