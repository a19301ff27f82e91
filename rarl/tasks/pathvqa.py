"""PathVQA (He et al., 2020): its loader, question typing and generic scoring, in one module.

Layouts: the official pickles (``pvqa/qas/<split>/<split>_qa.pkl``), the official repository's
LXMERT-format JSON, HF-style parquet, or the hub copy ``flaviagiammarino/path-vqa``. Question type: the
pickles' ``answer_type`` (``yes/no`` → closed, ``other``/``number`` → open), else the closed/open rule.
Scoring: PathVQA defines no official scorer here and a reference is one answer, so the task has the
defaults of :class:`~rarl.tasks.base.Task`.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from rarl.data.loaders.common import (
    _canonical_split,
    _each_record,
    _finish,
    _image_root,
    _is_hub_dataset,
    _json_list,
    _require_path,
    split_files,
)
from rarl.data.loaders.tables import _load_hub_table, _load_table_rows, _read_parquet
from rarl.data.rows import BadRow, RowCollector, identifier, image_file, text
from rarl.errors import DataError, UserError
from rarl.schema.sample import Sample
from rarl.tasks.base import Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

log = logging.getLogger("rarl.data")


# --------------------------------------------------------------------------------------------------
# PathVQA: the official pvqa/qas/<split>/<split>_qa.pkl + pvqa/images/<split>/, the official repository's
# LXMERT-format JSON (baselines/method1/saved/lxmert/pvqa_<split>.json), or HF-style parquet / the hub copy

PATHVQA_IMAGE_DIRS = ("images", "pvqa/images")


def load_pathvqa(spec: DatasetSpec) -> list[Sample]:
    """PathVQA from the official pickles, the LXMERT-format JSON, parquet, or the hub copy."""
    if _is_hub_dataset(spec):
        return _load_hub_table(spec)
    path = _require_path(spec)
    split = _canonical_split(spec.split)
    short = {"validation": "val"}.get(split, split)
    if path.is_dir():
        pickles = [
            c for c in (path / "qas" / short / f"{short}_qa.pkl", path / f"{short}_qa.pkl") if c.is_file()
        ]
        lxmert = sorted(path.rglob(f"pvqa_{short}.json"))
        parquets = split_files(path, spec.split, ".parquet")
        if not pickles and not parquets and not lxmert:
            raise UserError(f"{path}: no PathVQA {short}_qa.pkl, pvqa_{short}.json or {short}*.parquet found")
        if not pickles and lxmert:
            return _load_pathvqa_lxmert(spec, lxmert[0], path, short)
        if not pickles:
            samples: list[Sample] = []
            for file in parquets:
                samples += _load_table_rows(spec, file, _read_parquet(file), spec.column_map)
            return samples
        path = pickles[0]
    if path.suffix == ".parquet":
        return _load_table_rows(spec, path, _read_parquet(path), spec.column_map)
    if path.suffix == ".json":
        return _load_pathvqa_lxmert(spec, path, path.parent, short)
    root = path.parent.parent.parent if path.parent.parent.name == "qas" else path.parent
    image_root = _image_root(spec, root / "images", (short,))
    try:
        with path.open("rb") as handle:
            rows = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise DataError(str(path), None, None, f"not a readable pickle ({exc})") from None
    if hasattr(rows, "to_dict"):  # some redistributions pickle a pandas DataFrame instead of a list
        rows = rows.to_dict("records")
    if not isinstance(rows, list):
        raise DataError(
            str(path), None, None, f"expected a pickled list of questions, got {type(rows).__name__}"
        )
    collector = RowCollector(str(path), spec.skip_bad)

    def parse(number: int, record: dict) -> Sample:
        image_key = "image" if "image" in record else "img_id"
        image_name = text(record, image_key)
        if not Path(image_name).suffix:
            image_name += ".jpg"
        answer = text(record, "answer")
        answer_type = text(record, "answer_type", required=False)
        if answer_type is not None:  # the release spells them 'yes/no' and 'other'
            answer_type = {"yes/no": "closed", "other": "open", "number": "open"}.get(
                answer_type.lower(), answer_type
            )
        return Sample(
            id=identifier(record, "id", f"{Path(image_name).stem}-{number}"),
            image=image_file(image_root, image_name, image_key),
            question=text(record, "question"),
            answer=answer,
            question_type=collector.question_type(answer_type, answer),
            modality="pathology",
            split=spec.split,
        )

    _each_record(collector, rows, parse)
    return _finish(collector, spec)


def _pathvqa_image_root(spec: DatasetSpec, root: Path, short: str) -> Path | None:
    """Where PathVQA's ``<img_id>.jpg`` files live: image_dir, or ``images/<split>`` under the folder."""
    if spec.image_dir:
        return _image_root(spec, root, ())
    for name in PATHVQA_IMAGE_DIRS:
        if (root / name / short).is_dir():
            return root / name / short
    return None


def _load_pathvqa_lxmert(spec: DatasetSpec, path: Path, root: Path, short: str) -> list[Sample]:
    """The official repository's LXMERT JSON: per image, parallel lists of questions and ``{answer: score}``.

    The images are distributed separately (a file host); without them the questions still load, text-only
    (``image=None``), so that ``rarl data inspect`` and ``rarl data audit`` work; training and evaluation
    refuse text-only samples before loading a model.
    """
    image_root = _pathvqa_image_root(spec, root, short)
    if image_root is None:
        log.warning(
            "%s: no PathVQA images folder (images/%s); loading the questions text-only (inspect/audit only; "
            "set image_dir to train or evaluate)",
            path,
            short,
        )
    collector = RowCollector(str(path), spec.skip_bad)
    for number, entry in enumerate(_json_list(path), start=1):
        try:
            if not isinstance(entry, dict):
                raise BadRow(None, f"expected an object, got {type(entry).__name__}")
            image_id = text(entry, "img_id")
            questions = (entry.get("sentf") or {}).get("pvqa", [])
            labels = (entry.get("labelf") or {}).get("pvqa", [])
            parallel = isinstance(questions, list) and isinstance(labels, list)
            if not parallel or len(questions) != len(labels):
                raise BadRow("sentf", "expected equally long lists sentf.pvqa and labelf.pvqa")
            image = image_file(image_root, f"{image_id}.jpg", "img_id") if image_root and questions else None
        except BadRow as error:
            collector.bad(number, error)
            continue
        for index, (question, label) in enumerate(zip(questions, labels, strict=True)):
            where = f"{number} (img_id {image_id}, question {index + 1})"
            try:
                if not isinstance(label, dict) or not label:
                    raise BadRow("labelf", f"expected {{answer: score}}, got {label!r:.60}")
                answer = text({"answer": max(label, key=lambda key: label[key])}, "answer")
                question_text = text({"question": question}, "question")
            except BadRow as error:
                collector.bad(where, error)
                continue
            collector.samples.append(
                Sample(
                    id=f"{image_id}-{index + 1}",
                    image=image,
                    question=question_text,
                    answer=answer,
                    question_type=collector.question_type(None, answer),
                    modality="pathology",
                    split=spec.split,
                )
            )
    return _finish(collector, spec)


TASK = Task("pathvqa", load=load_pathvqa, hub_ids=("flaviagiammarino/path-vqa",))  # train/validation/test

__all__ = ["TASK", "load_pathvqa"]
