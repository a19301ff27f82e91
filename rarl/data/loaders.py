"""One loader per dataset source, all producing :class:`~rarl.data.schema.Sample` lists.

Why: the paper evaluates on benchmarks that each ship in their own official layout (VQA-RAD's single JSON
with ``phrase_type`` splits, SLAKE's per-split JSON with Chinese rows mixed in, VQA-Med 2019's pipe files
with ``#`` alternatives, PathVQA pickles or parquet, CV-Bench parquet/JSONL with lettered choices). Each
loader reads the layout as published, validates every row (:mod:`rarl.data.rows`) and logs its counts,
so a user can point a config at the unpacked download and get the same samples the paper used.

Every loader takes a :class:`~rarl.config.DatasetSpec` and returns samples in file order; naming,
subsampling and the final count line are done by :func:`rarl.data.load_dataset_spec`.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.data.rows import BadRow, RowCollector, image_file, text
from rarl.data.schema import Sample
from rarl.errors import DataError, UserError
from rarl.io import read_jsonl, read_text

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

log = logging.getLogger("rarl.data")

SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "validation": ("validation", "validate", "val", "valid", "dev"),
    "test": ("test", "testing"),
}


def split_names(split: str) -> tuple[str, ...]:
    """All spellings of a split name that datasets use (SLAKE: ``validate``; HF: ``validation``)."""
    for names in SPLIT_ALIASES.values():
        if split.lower() in names:
            return (split, *[n for n in names if n != split.lower()])
    return (split,)


def split_files(root: Path, split: str, suffix: str) -> list[Path]:
    """Files under ``root`` named for a split or its alias: ``train.parquet``, ``val-00000-of-00001.parquet``.

    The split name must be followed by a separator or the suffix, so ``val`` does not match ``validation``
    twice and ``test`` does not match ``testing_notes``.
    """
    import re

    names = "|".join(re.escape(name) for name in split_names(split))
    pattern = re.compile(rf"^({names})([-_.][^/]*)?{re.escape(suffix)}$", re.IGNORECASE)
    return sorted({p for p in root.rglob(f"*{suffix}") if pattern.match(p.name)})


def _require_path(spec: DatasetSpec) -> Path:
    if not spec.path:
        raise UserError(f"data source '{spec.source}' needs a path (data.*.path)")
    path = Path(spec.path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: dataset path not found (source '{spec.source}')")
    return path


def _split_file_in(path: Path, split: str, suffix: str) -> Path | None:
    for name in split_names(split):
        if (path / f"{name}{suffix}").is_file():
            return path / f"{name}{suffix}"
    return None


def _split_file(spec: DatasetSpec, suffix: str, layout: str) -> Path:
    """``spec.path`` itself when it is a file, else the ``<split><suffix>`` file inside that folder."""
    path = _require_path(spec)
    if not path.is_dir():
        return path
    found = _split_file_in(path, spec.split, suffix)
    if found is None:
        raise UserError(f"{path}: no {spec.split}{suffix} in this folder ({layout})")
    return found


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(
            str(path), exc.lineno, None, f"invalid JSON ({exc.msg}, column {exc.colno})"
        ) from None


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    """All objects of a JSONL file; invalid lines and non-UTF-8 bytes become a DataError naming the file."""
    return list(read_jsonl(path))


def _json_list(path: Path) -> list[Any]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataError(
            str(path), None, None, f"expected a JSON list of questions, got {type(data).__name__}"
        )
    return data


def _is_hub_dataset(spec: DatasetSpec) -> bool:
    from rarl.data.hub import is_hub_dataset

    return is_hub_dataset(spec.path)


def _hub_snapshot(repo_id: str) -> str:
    from rarl.data.hub import snapshot

    return snapshot(repo_id)


def _hub_rows(spec: DatasetSpec) -> Any:
    """The rows of a hub dataset (or a local folder in hub layout), through ``datasets.load_dataset``."""
    from rarl.data.hub import load_split

    return load_split(str(spec.path), spec.split, split_names(spec.split))


def _load_hub_table(spec: DatasetSpec) -> list[Sample]:
    """A hub dataset whose columns are already Sample fields (image, question, answer)."""
    return _load_table_rows(spec, f"{spec.path}[{spec.split}]", _hub_rows(spec), spec.column_map)


def _check_choice_answer(answer: str, choices: list[str] | None, key: str = "answer") -> None:
    """A multiple-choice answer must select one of the choices (``(A)``..``(D)`` for four, or an option's
    text), read by the same :func:`rarl.answers.choice_index` that scores predictions."""
    from rarl.answers import choice_index

    if choices and choice_index(answer, choices) is None:
        letters = [f"({chr(ord('A') + i)})" for i in range(len(choices))]
        raise BadRow(key, f"expected one of {' '.join(letters)} (or a choice's text), got {answer!r}")


def _extra_field(record: dict[str, Any]) -> dict[str, Any]:
    """The optional ``extra`` mapping; anything else is an error rather than silently dropped."""
    extra = record.get("extra")
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise BadRow("extra", f"expected a mapping of extra fields, got {type(extra).__name__} {extra!r:.60}")
    return dict(extra)


def _each_record(
    collector: RowCollector, rows: Iterable[Any], parse: Callable[[int, dict], Sample | None]
) -> None:
    """Run ``parse`` over rows (numbered from 1), routing :class:`BadRow` through the collector."""
    for number, record in enumerate(rows, start=1):
        try:
            if not isinstance(record, dict):
                raise BadRow(None, f"expected an object, got {type(record).__name__}")
            sample = parse(number, record)
        except BadRow as error:
            collector.bad(number, error)
            continue
        if sample is not None:
            collector.samples.append(sample)


def _finish(collector: RowCollector, spec: DatasetSpec, rule_note: str | None = None) -> list[Sample]:
    collector.check_missing_images()
    name = spec.name or spec.source
    collector.report(name, spec.split, rule_note)
    if not collector.samples and not collector.skipped:
        log.warning("%s/%s: no samples in %s", name, spec.split, collector.path)
    return collector.samples


# --------------------------------------------------------------------------------------------------
# synthetic


def load_synthetic(spec: DatasetSpec) -> list[Sample]:
    """``spec.num_samples`` synthetic samples of ``spec.split`` seeded by ``spec.seed``."""
    from rarl.data.synthetic import generate_samples

    return generate_samples(spec.num_samples, seed=spec.seed, split=spec.split)


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
            id=str(text(record, "qid", required=False) or number),
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


def _image_root(spec: DatasetSpec, base: Path, names: Iterable[str], *fallbacks: Path) -> Path:
    """``spec.image_dir`` if given, else the first of ``names`` under ``base`` (then under each fallback
    folder, e.g. the parent of MEVF's ``data_RAD/``), else ``base``."""
    if spec.image_dir:
        root = Path(spec.image_dir).expanduser()
        if not root.is_dir():
            raise UserError(f"{root}: image_dir not found")
        return root
    names = tuple(names)
    for folder in (base, *fallbacks):
        for name in names:
            if (folder / name).is_dir():
                return folder / name
    return base


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
            id=str(record.get("qid", number)),
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


# --------------------------------------------------------------------------------------------------
# VQA-Med 2019: pipe-separated text. train/val: id|question|answer; test: id|category|question|answer

VQA_MED_FILES: dict[str, tuple[str, ...]] = {
    "train": ("All_QA_Pairs_train.txt",),
    "validation": ("All_QA_Pairs_val.txt",),
    "test": ("VQAMed2019_Test_Questions_w_Ref_Answers.txt",),
}
VQA_MED_IMAGE_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("Train_images",),
    "validation": ("Val_images",),
    "test": ("VQAMed2019_Test_Images",),
}
VQA_MED_RULE = "closed when the answer (any '#' alternative) is yes/no, otherwise open"


def _canonical_split(split: str) -> str:
    for canonical, names in SPLIT_ALIASES.items():
        if split.lower() in names:
            return canonical
    return split


def _find_file(root: Path, names: Iterable[str], kind: str = "file") -> Path | None:
    for name in names:
        direct = root / name
        if direct.is_file() if kind == "file" else direct.is_dir():
            return direct
        for found in sorted(root.rglob(name)):
            if found.is_file() if kind == "file" else found.is_dir():
                return found
    return None


def load_vqa_med_2019(spec: DatasetSpec) -> list[Sample]:
    """ImageCLEF VQA-Med 2019 QA files (path: a QA ``.txt`` or the unpacked root folder)."""
    path = _require_path(spec)
    split = _canonical_split(spec.split)
    if path.is_dir():
        found = _find_file(path, VQA_MED_FILES.get(split, ()))
        if found is None:
            raise UserError(
                f"{path}: no VQA-Med 2019 QA file for split '{spec.split}' "
                f"(looked for {', '.join(VQA_MED_FILES.get(split, ('?',)))})"
            )
        root, path = path, found
    else:
        root = path.parent
        # a QA file names its own split (the images folder follows it, whatever spec.split says)
        split = next((key for key, names in VQA_MED_FILES.items() if path.name in names), split)
    image_root = Path(spec.image_dir) if spec.image_dir else None
    if image_root is None:
        image_root = _find_file(root, VQA_MED_IMAGE_DIRS.get(split, ()), kind="dir") or _find_file(
            path.parent, VQA_MED_IMAGE_DIRS.get(split, ()), kind="dir"
        )
    image_root = image_root or path.parent
    collector = RowCollector(str(path), spec.skip_bad)
    lines = read_text(path).splitlines()
    from rarl.answers import infer_question_type

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split("|")
        try:
            if len(parts) == 3:
                image_id, question, answer = parts
                category = None
            elif len(parts) == 4:
                image_id, category, question, answer = parts
            else:
                raise BadRow(
                    None, f"expected 'id|question|answer' or 'id|category|question|answer', got {line!r:.80}"
                )
            row = {"image_id": image_id, "question": question, "answer": answer}
            image_id, question, answer = (text(row, key) for key in ("image_id", "question", "answer"))
            image = image_file(image_root, f"{image_id}.jpg", "image_id")
        except BadRow as error:
            collector.bad(number, error)
            continue
        closed = any(infer_question_type(alt) == "closed" for alt in answer.split("#"))
        collector.inferred_types += 1
        collector.samples.append(
            Sample(
                id=f"{image_id}-{number}",
                image=image,
                question=question,
                answer=answer,  # '#' alternatives and '(…)' optional parts kept: answers_match reads them
                question_type="closed" if closed else "open",
                split=spec.split,
                extra={"category": category.strip() if category else None},
            )
        )
    return _finish(collector, spec, VQA_MED_RULE)


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
            id=str(record.get("id", f"{Path(image_name).stem}-{number}")),
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


# --------------------------------------------------------------------------------------------------
# CV-Bench: test_2d/test_3d parquet (embedded images) or test.jsonl + img/; choices + "(A)" answers

CVBENCH_TASKS = ("Count", "Relation", "Depth", "Distance")


def load_cvbench(spec: DatasetSpec) -> list[Sample]:
    """CV-Bench multiple choice (parquet, ``test.jsonl`` or the hub copy), filtered by ``spec.tasks``."""
    unknown = [t for t in spec.tasks if t not in CVBENCH_TASKS]
    if unknown:
        raise UserError(f"cvbench tasks: unknown {unknown}; valid options: {', '.join(CVBENCH_TASKS)}")
    if _is_hub_dataset(spec):
        root = Path(spec.path or "").expanduser()
        return _cvbench_rows(spec, f"{spec.path}[{spec.split}]", _hub_rows(spec), root)
    path = _require_path(spec)
    if path.is_dir():
        files = sorted(path.glob("*.parquet")) or sorted(path.glob("*.jsonl"))
        if not files:
            raise UserError(f"{path}: no CV-Bench parquet or jsonl files")
    else:
        files = [path]
    samples: list[Sample] = []
    for file in files:
        rows: list[dict[str, Any]] = _read_parquet(file) if file.suffix == ".parquet" else _jsonl_rows(file)
        samples += _cvbench_rows(spec, str(file), rows, file.parent)
    return samples


def _cvbench_rows(spec: DatasetSpec, origin: str, rows: Iterable[Any], base: Path) -> list[Sample]:
    """CV-Bench rows (the dataset card's columns: idx, type, task, image, question, choices, answer...)."""
    collector = RowCollector(origin, spec.skip_bad)
    root = _image_root(spec, base, ())

    def parse(number: int, record: dict) -> Sample | None:
        task = text(record, "task")
        if spec.tasks and task not in spec.tasks:
            collector.filtered[f"task {task!r} not in {spec.tasks}"] += 1
            return None
        choices = record.get("choices")
        if hasattr(choices, "tolist"):
            choices = choices.tolist()
        if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
            raise BadRow("choices", f"expected a non-empty list of strings, got {choices!r:.60}")
        answer = text(record, "answer")
        letters = [f"({chr(ord('A') + i)})" for i in range(len(choices))]
        if answer not in letters:
            raise BadRow("answer", f"expected one of {' '.join(letters)}, got {answer!r}")
        image = _table_image(record, "image", root) if record.get("image") is not None else None
        if image is None:
            image = image_file(root, text(record, "filename"), "filename")
        return Sample(
            id=str(record.get("idx", number)),
            image=image,
            question=text(record, "question"),
            answer=answer,
            question_type="choice",
            choices=choices,
            split=spec.split,
            extra={"task": task, "type": record.get("type"), "source": record.get("source")},
        )

    _each_record(collector, rows, parse)
    return _finish(collector, spec)


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
            id=str(record.get("id", number)),
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


# --------------------------------------------------------------------------------------------------
# Any HF dataset by name, or local parquet, with column_map {source column: Sample field}

SAMPLE_FIELDS = ("id", "image", "question", "answer", "question_type", "reasoning", "choices", "modality")


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise DataError(str(path), None, None, f"not a readable parquet file ({exc})") from None


def _table_image(record: dict[str, Any], key: str, root: Path) -> Any:
    """An image cell: a PIL image (HF ``Image`` feature), ``{bytes, path}`` (parquet), or a path string."""
    from PIL import Image, UnidentifiedImageError

    value = record.get(key)
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            from rarl.data.images import image_bytes_problem

            problem = image_bytes_problem(value["bytes"])
            if problem:
                raise BadRow(key, f"embedded image: {problem}")
            try:
                return Image.open(io.BytesIO(value["bytes"]))  # lazy: decoded again when first used
            except (UnidentifiedImageError, OSError) as exc:
                raise BadRow(key, f"embedded image bytes are not an image ({exc})") from None
        if value.get("path"):
            return image_file(root, str(value["path"]), key)
        raise BadRow(key, "image cell has neither bytes nor path")
    if isinstance(value, str) and value.strip():
        return image_file(root, value, key)
    raise BadRow(key, f"expected an image, got {type(value).__name__}")


def _load_table_rows(
    spec: DatasetSpec, origin: Path | str, rows: Iterable[Any], column_map: dict[str, str]
) -> list[Sample]:
    """Rows with Sample-named columns (after ``column_map``) → Samples, with the shared validation."""
    targets = set(column_map.values())
    bad_targets = sorted(targets - set(SAMPLE_FIELDS))
    if bad_targets:
        raise UserError(
            f"column_map targets {bad_targets} are not Sample fields; valid: {', '.join(SAMPLE_FIELDS)}"
        )
    collector = RowCollector(str(origin), spec.skip_bad)
    root = _image_root(spec, Path(origin).parent if isinstance(origin, Path) else Path.cwd(), ())
    inverse = {target: source for source, target in column_map.items()}
    stem = Path(str(origin)).stem  # default ids: unique across the files of one split

    def parse(number: int, raw: dict) -> Sample:
        record = {
            field: raw.get(inverse.get(field, field))
            for field in SAMPLE_FIELDS
            if inverse.get(field, field) in raw
        }
        for field in ("image", "question", "answer"):
            if field not in record:
                source = inverse.get(field, field)
                raise BadRow(source, f"missing (columns: {', '.join(map(str, raw))}; map it with column_map)")
        try:
            answer = text(record, "answer")
            question = text(record, "question")
        except BadRow as error:
            raise BadRow(inverse.get(error.field or "", error.field), error.problem) from None
        choices = record.get("choices")
        if hasattr(choices, "tolist"):
            choices = choices.tolist()
        if choices is not None and (
            not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)
        ):
            raise BadRow(
                inverse.get("choices", "choices"), f"expected a list of strings, got {choices!r:.60}"
            )
        qtype = text(record, "question_type", required=False)
        if qtype is None and choices:
            qtype = "choice"
        if choices:
            _check_choice_answer(answer, choices, inverse.get("answer", "answer"))
        try:
            image = _table_image(record, "image", root)
        except BadRow as error:
            raise BadRow(inverse.get("image", "image"), error.problem) from None
        return Sample(
            id=str(record["id"]) if record.get("id") is not None else f"{stem}-{number}",
            image=image,
            question=question,
            answer=answer,
            question_type=collector.question_type(
                qtype, answer, inverse.get("question_type", "question_type")
            ),
            reasoning=text(record, "reasoning", required=False),
            choices=choices or None,
            modality=text(record, "modality", required=False),
            split=spec.split,
        )

    _each_record(collector, rows, parse)
    return _finish(collector, spec)


def load_parquet(spec: DatasetSpec) -> list[Sample]:
    """A local parquet file (or a folder of ``<split>*.parquet``) with ``column_map`` to Sample fields."""
    path = _require_path(spec)
    files = [path]
    if path.is_dir():
        files = split_files(path, spec.split, ".parquet")
        if not files:
            raise UserError(f"{path}: no {spec.split}*.parquet files")
    samples: list[Sample] = []
    for file in files:
        samples += _load_table_rows(spec, file, _read_parquet(file), spec.column_map)
    return samples


def load_hf(spec: DatasetSpec) -> list[Sample]:
    """Any dataset ``datasets.load_dataset`` can open (hub name, local folder), mapped by ``column_map``.

    A hub id whose schema a named source knows (``HUB_DATASETS``) goes to that source's loader, so
    ``{source: hf, path: nyu-visionx/CV-Bench}`` needs no column map.
    """
    from rarl.data.sources import HUB_DATASETS

    if not spec.path:
        raise UserError("data source 'hf' needs path: a dataset name or local folder")
    known = HUB_DATASETS.get(spec.path.lower())
    if known and not spec.column_map:
        return LOADERS[known](spec)
    local = Path(spec.path).expanduser()
    if not local.exists():
        from rarl.data.hub import looks_local

        if looks_local(spec.path):
            raise UserError(f"{local}: dataset path not found (source 'hf')")
    return _load_table_rows(spec, f"{spec.path}[{spec.split}]", _hub_rows(spec), spec.column_map)


LOADERS: dict[str, Callable[[DatasetSpec], list[Sample]]] = {
    "synthetic": load_synthetic,
    "vqa_rad": load_vqa_rad,
    "slake": load_slake,
    "vqa_med_2019": load_vqa_med_2019,
    "pathvqa": load_pathvqa,
    "cvbench": load_cvbench,
    "reasoning_jsonl": load_reasoning_jsonl,
    "parquet": load_parquet,
    "hf": load_hf,
}


def load_source(spec: DatasetSpec) -> list[Sample]:
    """Dispatch on ``spec.source`` (names from :data:`rarl.data.sources.SOURCE_NAMES`)."""
    try:
        loader = LOADERS[spec.source]
    except KeyError:
        raise UserError(f"unknown data source '{spec.source}'; valid options: {', '.join(LOADERS)}") from None
    return loader(spec)


__all__ = ["CVBENCH_TASKS", "LOADERS", "load_source", "split_names"]
