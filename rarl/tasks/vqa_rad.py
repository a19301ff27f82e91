"""VQA-RAD (Lau et al., 2018): its loader, question typing and (generic) scoring, in one module.

Layouts: the official single JSON (split by ``phrase_type``), MEVF's ``data_RAD/`` split files, or the hub
copy ``flaviagiammarino/vqa-rad``. Question type: the row's ``answer_type`` (CLOSED/OPEN); the hub copy
has none, so the closed/open rule of :mod:`rarl.data.rows` types it. Scoring: VQA-RAD defines no official
scorer, and a reference is one answer taken as written (no ``#`` or ``( … )`` rules), so the task has only
the defaults of :class:`~rarl.tasks.base.Task` (the ``rarl.*`` and ``llava_med.*`` metrics every
benchmark gets).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.data.loaders.common import (
    _each_record,
    _finish,
    _image_root,
    _is_hub_dataset,
    _json_list,
    _require_path,
)
from rarl.data.loaders.tables import _load_hub_table
from rarl.data.rows import BadRow, RowCollector, identifier, image_file, text
from rarl.errors import UserError
from rarl.schema.sample import Sample
from rarl.tasks.base import Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

# --------------------------------------------------------------------------------------------------
# VQA-RAD: one JSON list; split by phrase_type (freeform/para = train, test_freeform/test_para = test).
# The MEVF split (data_RAD/trainset.json, testset.json) splits by file and adds templated "frame" questions.

VQA_RAD_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("freeform", "para"),
    "test": ("test_freeform", "test_para"),
}
VQA_RAD_MEVF_FILES = {"train": "trainset.json", "test": "testset.json"}
VQA_RAD_IMAGE_DIRS = ("VQA_RAD Image Folder", "images", "imgs")
# question_type as published: compound values ("POS, PRES"), two typos and a lower-case "Other"
VQA_RAD_CATEGORY_FIXES = {"ATRIB": "ATTRIB", "PRSE": "PRES"}


def _vqa_rad_categories(value: Any) -> list[str]:
    """``"POS, PRES"`` → ``["POS", "PRES"]``; typos (ATRIB, PRSE) and case (Other) repaired."""
    if not isinstance(value, str) or value.strip().upper() in ("", "NULL"):
        return []
    parts = [part.strip().upper() for part in value.replace("/", ",").split(",") if part.strip()]
    return [VQA_RAD_CATEGORY_FIXES.get(part, part) for part in parts]


def _null_to_none(value: Any) -> Any:
    """VQA-RAD writes unused fields as the string ``"NULL"``, not JSON null."""
    return None if isinstance(value, str) and value.strip().upper() == "NULL" else value


def _vqa_rad_file(spec: DatasetSpec, path: Path, split: str) -> tuple[Path, bool]:
    """The question file for ``split`` and whether it is an MEVF per-split file (no phrase_type split)."""
    if path.is_file():
        return path, path.name in VQA_RAD_MEVF_FILES.values()
    mevf = path / VQA_RAD_MEVF_FILES.get(split, "")
    official = sorted(p for p in path.glob("*.json") if p.name not in VQA_RAD_MEVF_FILES.values())
    if official:
        return official[0], False
    if mevf.is_file():
        return mevf, True
    raise UserError(
        f"{path}: no VQA-RAD question file here (expected 'VQA_RAD Dataset Public.json', "
        f"or the MEVF split's {VQA_RAD_MEVF_FILES.get(split, 'trainset.json/testset.json')})"
    )


def load_vqa_rad(spec: DatasetSpec) -> list[Sample]:
    """VQA-RAD: the official ``VQA_RAD Dataset Public.json``, MEVF's ``data_RAD/`` split, or the hub copy."""
    if _is_hub_dataset(spec):
        return _load_hub_table(spec)
    path = _require_path(spec)
    split = spec.split.lower()
    if split not in VQA_RAD_SPLITS:
        raise UserError(f"VQA-RAD has splits train and test, not '{spec.split}'")
    path, per_split_file = _vqa_rad_file(spec, path, split)
    image_root = _image_root(spec, path.parent, VQA_RAD_IMAGE_DIRS, path.parent.parent)
    collector = RowCollector(str(path), spec.skip_bad)
    known_phrases = VQA_RAD_SPLITS["train"] + VQA_RAD_SPLITS["test"] + ("frame",)

    def parse(number: int, record: dict) -> Sample | None:
        phrase = text(record, "phrase_type")
        if phrase.lower() not in known_phrases:
            raise BadRow("phrase_type", f"unknown phrase_type {phrase!r}")
        if not per_split_file and phrase.lower() not in VQA_RAD_SPLITS[split]:
            return None
        question = text(record, "question")
        answer = text(record, "answer")
        answer_type = text(record, "answer_type", required=False)
        categories = _vqa_rad_categories(record.get("question_type"))
        return Sample(
            id=identifier(record, "qid", str(number)),
            image=image_file(image_root, text(record, "image_name"), "image_name"),
            question=question,
            answer=answer,
            question_type=collector.question_type(answer_type, answer),
            modality=None,
            split=spec.split,
            extra={
                "phrase_type": phrase,
                "organ": _null_to_none(record.get("image_organ")),
                "category": ", ".join(categories) or None,  # PRES, SIZE, ... (content, not closed/open)
                "categories": categories,
                "evaluation": _null_to_none(record.get("evaluation")),
                "question_rephrase": _null_to_none(record.get("question_rephrase")),
            },
        )

    _each_record(collector, _json_list(path), parse)
    return _finish(collector, spec)


TASK = Task("vqa_rad", load=load_vqa_rad, hub_ids=("flaviagiammarino/vqa-rad",))  # train 1,793 / test 451

__all__ = ["TASK", "VQA_RAD_SPLITS", "load_vqa_rad"]
