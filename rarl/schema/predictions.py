"""The one reader and validator of ``predictions.jsonl`` files.

Why one place: ``rarl eval`` (resuming), ``rarl judge``, ``rarl review`` and ``rarl report`` all read
these files, and a file edited by hand or merged from two runs can hold a missing field, a list where
text belongs, the same item twice, or two models. Each of those would silently skew a score (a duplicate
counted twice turns 66.67 % into 100 %; two models averaged under one name), so every reader goes through
:func:`read_predictions`, which refuses them with a one-line :class:`~rarl.errors.DataError` naming the
file, the line and the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rarl.errors import DataError
from rarl.io import is_valid_unicode, read_jsonl_numbered
from rarl.schema.records import PredictionRecord

REQUIRED_TEXT_FIELDS = ("id", "dataset", "split", "question", "reference_answer", "model", "pred_answer")
OPTIONAL_TEXT_FIELDS = ("prompt", "question_type", "raw_output", "pred_reasoning")  # default ""
NULLABLE_TEXT_FIELDS = ("reference_reasoning", "image", "modality", "fingerprint", "benchmark")  # or None


def _valid_text(value: str, path: str, line: int, name: str) -> str:
    """``value``, unless it holds a lone surrogate (``"\\ud800"`` decodes to one): the ratings database,
    the judge prompt and every UTF-8 file downstream would fail on it later, far from this line."""
    if not is_valid_unicode(value):
        raise DataError(path, line, name, "holds a lone surrogate (U+D800-U+DFFF), not valid Unicode text")
    return value


def record_from_row(row: dict[str, Any], path: str, line: int) -> PredictionRecord:
    """One validated :class:`PredictionRecord`; a bad field raises :class:`DataError` (file, line, field)."""
    values: dict[str, Any] = {}
    for name in REQUIRED_TEXT_FIELDS:
        value = row.get(name)
        if value is None:
            raise DataError(path, line, name, "missing")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise DataError(path, line, name, f"expected text, got {type(value).__name__}")
        values[name] = _valid_text(str(value), path, line, name)
    for name in OPTIONAL_TEXT_FIELDS + NULLABLE_TEXT_FIELDS:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            raise DataError(path, line, name, f"expected text, got {type(value).__name__}")
        if value is not None:
            _valid_text(value, path, line, name)
        values[name] = value if value is not None or name in NULLABLE_TEXT_FIELDS else ""
    choices = row.get("choices")
    if choices is not None and (
        not isinstance(choices, list) or not all(isinstance(c, (str, int, float)) for c in choices)
    ):
        raise DataError(path, line, "choices", "expected a list of options")
    values["choices"] = [str(c) for c in choices] if choices is not None else None
    extra = row.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise DataError(path, line, "extra", f"expected a mapping, got {type(extra).__name__}")
    values["extra"] = dict(extra or {})
    return PredictionRecord(**values)


def read_predictions(
    path: str | os.PathLike[str], *, one_model: bool = True, tolerate_truncated_tail: bool = True
) -> list[PredictionRecord]:
    """Every record of a predictions file, validated.

    Refused with a :class:`DataError`: a missing or non-text field, the same item twice (per model), and,
    when ``one_model`` (judging, reporting, resuming: anything that scores one run), rows of a second
    model or prompt. ``rarl review`` passes ``one_model=False`` because it may compare runs in one file
    (two models, or one model under two prompts); each (model, prompt, item) then occurs once.
    A truncated last line (an interrupted writer) is ignored when ``tolerate_truncated_tail``.
    """
    records, _ = _read(path, one_model, tolerate_truncated_tail, keep_first=False)
    return records


def read_predictions_keeping_first(path: str | os.PathLike[str]) -> tuple[list[PredictionRecord], int]:
    """The records of one run's predictions file with the first of each item kept, and how many later
    copies were dropped.

    Why: resuming (``rarl eval``) repairs a file that holds an item twice (two writers at once under an
    older rarl, a hand merge) instead of refusing it forever; every other check of
    :func:`read_predictions` still applies.
    """
    return _read(path, True, True, keep_first=True)


def _read(
    path: str | os.PathLike[str], one_model: bool, tolerate_truncated_tail: bool, *, keep_first: bool
) -> tuple[list[PredictionRecord], int]:
    source = str(Path(path))
    records: list[PredictionRecord] = []
    first_line: dict[tuple[str, str, str], int] = {}
    dropped = 0
    for line, row in read_jsonl_numbered(path, tolerate_truncated_tail=tolerate_truncated_tail):
        record = record_from_row(row, source, line)
        if one_model and records and (record.model, record.prompt) != (records[0].model, records[0].prompt):
            raise DataError(
                source,
                line,
                "model",
                f"model={record.model!r} prompt={record.prompt!r}, but row {min(first_line.values())} "
                f"has model={records[0].model!r} prompt={records[0].prompt!r}; one file holds one run",
            )
        ident = (record.model, record.prompt, record.key)
        if ident in first_line:
            if keep_first:
                dropped += 1
                continue
            of_prompt = f" with prompt {record.prompt}" if record.prompt and not one_model else ""
            raise DataError(
                source,
                line,
                "id",
                f"duplicate item {record.key} of model {record.model}{of_prompt} "
                f"(first at row {first_line[ident]})"
                + ("; rerunning `rarl eval` on its directory keeps the first of each" if one_model else ""),
            )
        first_line[ident] = line
        records.append(record)
    return records, dropped


__all__ = ["read_predictions", "read_predictions_keeping_first", "record_from_row"]
