"""The file names of an evaluation run directory and the reader of its predictions.

Why here, at the bottom: ``rarl eval`` writes these files, while ``rarl judge``, ``rarl review`` and
``rarl report`` read them; naming them once below all of those lets each read a run directory without
importing the evaluation pipeline.
"""

from __future__ import annotations

from pathlib import Path

from rarl.schema.predictions import read_predictions as read_validated
from rarl.schema.records import PredictionRecord

PREDICTIONS_FILE = "predictions.jsonl"
RESULTS_FILE = "results.json"
RESULTS_MD = "results.md"
JUDGEMENTS_DIR = "judgements"
PART_GLOB = "predictions.part-*-of-*.jsonl"


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """Validated records of a predictions file of one run (see :mod:`rarl.schema.predictions`; a
    truncated last line, left by an interruption, is ignored)."""
    return read_validated(path, one_model=True, tolerate_truncated_tail=True)


__all__ = [
    "JUDGEMENTS_DIR",
    "PART_GLOB",
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "RESULTS_MD",
    "read_predictions",
]
