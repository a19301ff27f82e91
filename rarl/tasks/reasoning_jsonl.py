"""Reasoning JSONL (RARL / Silvar-Med style): question, reasoning, short answer, image; rarl's own format.

A source rather than a benchmark, but with its own layout and typing (a ``question_type`` field, ``choice``
when ``choices`` are given, else the closed/open rule), so it is a task module like the benchmarks; it is
scored by the defaults of :class:`~rarl.tasks.base.Task` (one reference answer, no official metrics).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rarl.data.loaders.common import (
    _check_choice_answer,
    _each_record,
    _extra_field,
    _finish,
    _image_root,
    _jsonl_rows,
    _split_file,
    split_names,
)
from rarl.data.rows import BadRow, RowCollector, identifier, image_file, text
from rarl.schema.sample import Sample
from rarl.tasks.base import Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

# --------------------------------------------------------------------------------------------------
# reasoning JSONL (RARL / Silvar-Med style): question, reasoning|explanation, short answer, image

REASONING_KEYS = ("reasoning", "explanation", "rationale", "thinking")
ANSWER_KEYS = ("answer", "short_answer", "gt_answer")
IMAGE_KEYS = ("image", "image_path", "img_name", "img_path")


def _first_key(record: dict[str, Any], keys: Iterable[str]) -> str:
    return next((key for key in keys if key in record), next(iter(keys)))


def load_reasoning_jsonl(spec: DatasetSpec) -> list[Sample]:
    """Reasoning-annotated JSONL: ``<dir>/<split>.jsonl`` (or one file); image paths relative to the file."""
    path = _split_file(spec, ".jsonl", "one <split>.jsonl per split")
    image_root = _image_root(spec, path.parent, ())
    collector = RowCollector(str(path), spec.skip_bad)
    rows = _jsonl_rows(path)
    has_split = any("split" in row for row in rows)

    def parse(number: int, record: dict) -> Sample | None:
        record_split = text(record, "split", required=False)
        if has_split and record_split is not None and record_split not in split_names(spec.split):
            collector.filtered[f"split {record_split!r}"] += 1
            return None
        answer = text(record, _first_key(record, ANSWER_KEYS))
        choices = record.get("choices")
        if choices is not None and (
            not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)
        ):
            raise BadRow("choices", f"expected a list of strings, got {choices!r:.60}")
        qtype = text(record, "question_type", required=False)
        if qtype is None and choices:
            qtype = "choice"
        if qtype == "choice" or (qtype is None and choices):
            _check_choice_answer(answer, choices)
        image_key = _first_key(record, IMAGE_KEYS)
        extra = _extra_field(record)
        return Sample(
            id=identifier(record, "id", str(number)),
            image=image_file(image_root, text(record, image_key), image_key),
            question=text(record, "question"),
            answer=answer,
            question_type=collector.question_type(qtype, answer, "question_type"),
            reasoning=text(record, _first_key(record, REASONING_KEYS), required=False),
            choices=choices or None,
            modality=text(record, "modality", required=False),
            split=spec.split,
            extra=extra,
        )

    _each_record(collector, rows, parse)
    return _finish(collector, spec)


TASK = Task("reasoning_jsonl", load=load_reasoning_jsonl)

__all__ = ["ANSWER_KEYS", "IMAGE_KEYS", "REASONING_KEYS", "TASK", "load_reasoning_jsonl"]
