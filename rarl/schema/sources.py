"""The registry of dataset sources: every name a config's ``data.*.source`` accepts, written once.

Why: the config schema, the CLI's ``--source`` choices, ``rarl data inspect``'s default splits and the
loader dispatch all need the same list; keeping it here (importing nothing heavy) lets each of them read
it instead of repeating it. ``HUB_DATASETS`` maps the hub ids whose schemas each named source knows
(looked up in their dataset cards) so ``{source: hf, path: <id>}`` needs no ``column_map``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceInfo:
    """One source: its name, what it reads, and the splits tried when inspecting a bare path."""

    name: str
    reads: str
    default_splits: tuple[str, ...]


SOURCES: tuple[SourceInfo, ...] = (
    SourceInfo("synthetic", "seeded synthetic shapes (offline demo)", ("train", "test")),
    SourceInfo(
        "reasoning_jsonl",
        "<split>.jsonl with question/answer/reasoning/image",
        ("train", "validation", "test"),
    ),
    SourceInfo(
        "vqa_rad", "VQA-RAD official JSON, MEVF data_RAD/, or flaviagiammarino/vqa-rad", ("train", "test")
    ),
    SourceInfo("slake", "SLAKE Slake1.0/ (English rows) or BoKelvin/SLAKE", ("train", "validation", "test")),
    SourceInfo("vqa_med_2019", "ImageCLEF VQA-Med 2019 pipe files", ("train", "validation", "test")),
    SourceInfo(
        "pathvqa",
        "PathVQA pickles, LXMERT JSON, parquet, or flaviagiammarino/path-vqa",
        ("train", "validation", "test"),
    ),
    SourceInfo("cvbench", "CV-Bench parquet/JSONL or nyu-visionx/CV-Bench", ("test",)),
    SourceInfo(
        "hf", "any datasets.load_dataset name or folder (column_map)", ("train", "validation", "test")
    ),
    SourceInfo("parquet", "local parquet files (column_map)", ("train", "validation", "test")),
)
SOURCE_NAMES: tuple[str, ...] = tuple(info.name for info in SOURCES)
DEFAULT_SPLITS: dict[str, tuple[str, ...]] = {info.name: info.default_splits for info in SOURCES}

# hub dataset id (lower case) → the source whose loader knows its columns (from each dataset card)
HUB_DATASETS: dict[str, str] = {
    "flaviagiammarino/vqa-rad": "vqa_rad",  # image, question, answer; train 1,793 / test 451
    "flaviagiammarino/path-vqa": "pathvqa",  # image, question, answer; train / validation / test
    "bokelvin/slake": "slake",  # the official JSON files (validation.json) + imgs.zip
    "nyu-visionx/cv-bench": "cvbench",  # idx, type, task, image, question, choices, answer, ...
}

__all__ = ["DEFAULT_SPLITS", "HUB_DATASETS", "SOURCES", "SOURCE_NAMES", "SourceInfo"]
