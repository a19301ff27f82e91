"""What every loader shares: split-name aliases and split files, JSON helpers, hub access, row collection
(:func:`_each_record`/:func:`_finish`), image roots, and the synthetic source.

Why here: one copy of the layout rules all the per-benchmark loaders rely on, so they agree on split names,
error messages and the per-loader count line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.data.rows import BadRow, RowCollector
from rarl.errors import DataError, UserError
from rarl.io import read_jsonl, read_text
from rarl.schema.sample import Sample

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
    """A JSON file's value; a leading UTF-8 byte-order mark (Windows editors and Excel write one) is
    dropped, since ``json`` refuses it; invalid JSON is a DataError naming the line."""
    try:
        return json.loads(read_text(path).removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise DataError(
            str(path), exc.lineno, None, f"invalid JSON ({exc.msg}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise DataError(str(path), None, None, "invalid JSON (nested too deeply)") from None


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
    """``spec.num_samples`` synthetic samples of ``spec.split`` seeded by ``spec.seed``, with the spec's
    synthetic options (``kinds``, ``random_answers``, ``reasoning_fraction``, ``paraphrase``)."""
    from rarl.data.synthetic import ALL_KINDS, generate_samples

    unknown = [kind for kind in spec.kinds if kind not in ALL_KINDS]
    if unknown:
        raise UserError(
            f"data: synthetic kinds: unknown kind(s) {unknown}; valid options: {', '.join(ALL_KINDS)}"
        )
    return generate_samples(
        spec.num_samples,
        seed=spec.seed,
        split=spec.split,
        kinds=spec.kinds or None,
        random_answers=spec.random_answers,
        reasoning_fraction=spec.reasoning_fraction,
        paraphrase=spec.paraphrase,
    )


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
