"""The registry of dataset sources: every name a config's ``data.*.source`` accepts, written once.

Why: the config schema, the CLI's ``--source`` choices, ``rarl data inspect``'s default splits and the
loader dispatch all need the same list; keeping it here (importing nothing heavy) lets each of them read
it instead of repeating it. An entry with a ``module`` is a benchmark (or a source with its own typing)
whose loader, question typing, reference rules and official scorers are the one file
``rarl/tasks/<module>.py``; :mod:`rarl.tasks` imports the modules named here, so adding a benchmark is that
file and one line below. The generic tables (``hf``, ``parquet``) have no module: they read any table
through ``column_map`` (:mod:`rarl.data.loaders.tables`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceInfo:
    """One source: its name, what it reads, the splits tried when inspecting a bare path, and the task
    module under ``rarl/tasks/`` that loads (and scores) it, ``None`` for a generic table."""

    name: str
    reads: str
    default_splits: tuple[str, ...]
    module: str | None = None


SOURCES: tuple[SourceInfo, ...] = (
    SourceInfo("synthetic", "seeded synthetic shapes (offline demo)", ("train", "test"), "synthetic"),
    SourceInfo(
        "reasoning_jsonl",
        "<split>.jsonl with question/answer/reasoning/image",
        ("train", "validation", "test"),
        "reasoning_jsonl",
    ),
    SourceInfo(
        "vqa_rad",
        "VQA-RAD official JSON, MEVF data_RAD/, or flaviagiammarino/vqa-rad",
        ("train", "test"),
        "vqa_rad",
    ),
    SourceInfo(
        "slake", "SLAKE Slake1.0/ (English rows) or BoKelvin/SLAKE", ("train", "validation", "test"), "slake"
    ),
    SourceInfo(
        "vqa_med_2019", "ImageCLEF VQA-Med 2019 pipe files", ("train", "validation", "test"), "vqa_med_2019"
    ),
    SourceInfo(
        "pathvqa",
        "PathVQA pickles, LXMERT JSON, parquet, or flaviagiammarino/path-vqa",
        ("train", "validation", "test"),
        "pathvqa",
    ),
    SourceInfo("cvbench", "CV-Bench parquet/JSONL or nyu-visionx/CV-Bench", ("test",), "cvbench"),
    SourceInfo(
        "hf", "any datasets.load_dataset name or folder (column_map)", ("train", "validation", "test")
    ),
    SourceInfo("parquet", "local parquet files (column_map)", ("train", "validation", "test")),
)
SOURCE_NAMES: tuple[str, ...] = tuple(info.name for info in SOURCES)
DEFAULT_SPLITS: dict[str, tuple[str, ...]] = {info.name: info.default_splits for info in SOURCES}

__all__ = ["DEFAULT_SPLITS", "SOURCES", "SOURCE_NAMES", "SourceInfo"]
