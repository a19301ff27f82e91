"""The judgement record: one line of ``judgements/<judge>.jsonl`` in an evaluation run directory.

Why here: ``rarl eval``/``rarl judge`` write these files and ``rarl report`` reads them; the shape sits in
the shared schema so that the report layer reads judgements without the judging code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rarl.io import atomic_write_text, json_line, read_jsonl
from rarl.schema.records import from_known_fields


@dataclass
class Judgement:
    """The outcome of judging one prediction (``status`` ok | parse_error | api_error).

    ``reasoning_score`` is ``None`` on an ok judgement whose reasoning the prompt does not score
    (``reasoning_applicable`` false: the paper's prompt on an item without a reference reasoning).
    """

    key: str  # PredictionRecord.key
    judge: str
    model: str
    status: str
    reasoning_score: int | None = None
    prediction_score: int | None = None
    evaluation: str = ""
    parsed_by: str | None = None
    cached: bool = False
    attempts: int = 0
    error: str | None = None
    reply: str | None = None
    prompt: str | None = None  # the judge prompt's name (rarl.eval.judge.JUDGE_PROMPTS) and version
    prompt_version: str | None = None
    reasoning_applicable: bool = True  # False: the prompt does not score this item's reasoning (n/a)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        return from_known_fields(cls, data)


def write_judgements(path: str | os.PathLike[str], judgements: Sequence[Judgement]) -> Path:
    """All judgements of one judge as JSONL (rewritten atomically: it is derived data, not a log)."""
    text = "".join(json_line(j.to_dict()) + "\n" for j in judgements)
    return atomic_write_text(path, text)


def read_judgements(path: str | os.PathLike[str]) -> list[Judgement]:
    return [Judgement.from_dict(row) for row in read_jsonl(path)]


__all__ = ["Judgement", "read_judgements", "write_judgements"]
