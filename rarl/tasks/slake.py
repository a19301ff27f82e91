"""SLAKE 1.0 (Liu et al., 2021): its loader (English rows only), question typing, generic scoring, and the
image/language overlap ``rarl data audit`` reports.

Layouts: the official ``Slake1.0/`` (per-split JSON + ``imgs/``, or ``imgs.zip`` unpacked once) or the hub
copy ``BoKelvin/SLAKE`` (the same files). Question type: the row's ``answer_type``. Scoring: SLAKE defines
no official scorer and a reference is one answer, so the task has the defaults of
:class:`~rarl.tasks.base.Task`. Why the overlap lives here: the loader drops the Chinese rows, but whether
the languages share images across splits can only be seen in the raw files, which only this module reads.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.data.loaders.common import (
    _each_record,
    _finish,
    _hub_snapshot,
    _image_root,
    _is_hub_dataset,
    _json_list,
    _require_path,
    _split_file,
    _split_file_in,
)
from rarl.data.rows import RowCollector, identifier, image_file, text
from rarl.errors import DataError
from rarl.schema.sample import Sample
from rarl.tasks.base import Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

log = logging.getLogger("rarl.data")


# --------------------------------------------------------------------------------------------------
# SLAKE: <root>/{train,validate|validation,test}.json + <root>/imgs/; English rows only (q_lang == "en")

SLAKE_FOLDER = "Slake1.0"  # what the official download unpacks to


def _slake_root(path: Path) -> Path:
    """The folder holding SLAKE's split files: ``path`` itself, or the official ``Slake1.0/`` inside it."""
    has_splits = any((path / f"{n}.json").is_file() for n in ("train", "test"))
    if path.is_dir() and not has_splits and (path / SLAKE_FOLDER).is_dir():
        return path / SLAKE_FOLDER
    return path


def _unpack_images(root: Path, folder: str) -> None:
    """Unpack ``<folder>.zip`` beside the split files once (the hub copy ships ``imgs.zip``), atomically."""
    import shutil
    import tempfile
    import zipfile

    archive = root / f"{folder}.zip"
    if (root / folder).is_dir() or not archive.is_file():
        return
    log.info("unpacking %s (once)", archive)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder}-"))
    try:
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(staging)
        inner = staging / folder if (staging / folder).is_dir() else staging
        inner.rename(root / folder)
    except zipfile.BadZipFile as exc:
        raise DataError(str(archive), None, None, f"not a readable zip file ({exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_slake(spec: DatasetSpec) -> list[Sample]:
    """SLAKE 1.0 (English subset) from the official folder (``Slake1.0/`` or its parent) or the hub copy.

    Rows whose answer is empty in the official file (one: train qid 1622) are left out and counted, since
    an empty reference can be neither learned nor scored.
    """
    if _is_hub_dataset(spec) and not Path(spec.path or "").expanduser().exists():
        spec = replace(spec, path=_hub_snapshot(spec.path or ""))  # the hub repo holds the official files
    path = _require_path(spec)
    spec = replace(spec, path=str(_slake_root(path)))
    path = _split_file(spec, ".json", "SLAKE splits: train, validate/validation, test")
    _unpack_images(path.parent, "imgs")
    image_root = _image_root(spec, path.parent, ("imgs", "images"))
    collector = RowCollector(str(path), spec.skip_bad)

    def parse(number: int, record: dict) -> Sample | None:
        language = text(record, "q_lang")
        if language != "en":
            collector.filtered[f"q_lang {language!r}, English only"] += 1
            return None
        answer = text(record, "answer", required=False)
        if answer is None and "answer" in record:
            collector.filtered["answer empty in the source file"] += 1
            return None
        answer = text(record, "answer")
        answer_type = text(record, "answer_type", required=False)
        return Sample(
            id=identifier(record, "qid", str(number)),
            image=image_file(image_root, text(record, "img_name"), "img_name"),
            question=text(record, "question"),
            answer=answer,
            question_type=collector.question_type(answer_type, answer),
            modality=text(record, "modality", required=False),
            split=spec.split,
            extra={
                "location": record.get("location"),
                "content_type": record.get("content_type"),
                "base_type": record.get("base_type"),
            },
        )

    _each_record(collector, _json_list(path), parse)
    return _finish(collector, spec)


def slake_images_by_language(spec: DatasetSpec) -> dict[str, dict[str, set[str]]]:
    """``{split file: {q_lang: image names}}`` over all of SLAKE's split files, every language included.

    For the audit: the loader keeps English only, but whether the languages share images across splits can
    only be seen in the raw files.
    """
    if not spec.path or _is_hub_dataset(spec):
        return {}
    root = _slake_root(Path(spec.path).expanduser())
    result: dict[str, dict[str, set[str]]] = {}
    for split in ("train", "validation", "test"):
        file = _split_file_in(root, split, ".json")
        if file is None:
            continue
        languages: dict[str, set[str]] = {}
        for record in _json_list(file):
            if isinstance(record, dict) and isinstance(record.get("img_name"), str):
                languages.setdefault(str(record.get("q_lang")), set()).add(record["img_name"])
        result[split] = languages
    return result


def slake_language_overlap(spec: DatasetSpec) -> list[dict[str, Any]] | None:
    """Images shared between SLAKE splits when English and Chinese rows are mixed (None if not SLAKE)."""
    if spec.source != "slake":
        return None
    by_split = slake_images_by_language(spec)
    if not by_split:
        return None
    result = []
    for (split_a, langs_a), (split_b, langs_b) in combinations(by_split.items(), 2):
        all_a = set().union(*langs_a.values())
        all_b = set().union(*langs_b.values())
        same_language = {
            lang: len(langs_a.get(lang, set()) & langs_b.get(lang, set())) for lang in sorted(langs_a)
        }
        result.append(
            {
                "a": split_a,
                "b": split_b,
                "shared_images_all_languages": len(all_a & all_b),
                "shared_images_within_language": same_language,
            }
        )
    return result


TASK = Task("slake", load=load_slake, hub_ids=("bokelvin/slake",))  # the official JSON files + imgs.zip

__all__ = ["TASK", "load_slake", "slake_images_by_language", "slake_language_overlap"]
