"""Generic table loaders: any HF dataset by name (``hf``) or local parquet, mapped by ``column_map``."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.data.loaders.common import (
    _check_choice_answer,
    _each_record,
    _finish,
    _hub_rows,
    _image_root,
    _require_path,
    split_files,
)
from rarl.data.rows import BadRow, RowCollector, identifier, image_file, text
from rarl.errors import DataError, UserError
from rarl.schema.sample import Sample

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

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
        from rarl.data.images import shape_problem

        problem = shape_problem(value.width, value.height)
        if problem:
            raise BadRow(key, f"image: {problem}")
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
            sample_id = identifier(record, "id", f"{stem}-{number}")
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
            id=sample_id,
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


def _load_hub_table(spec: DatasetSpec) -> list[Sample]:
    """A hub dataset whose columns are already Sample fields (image, question, answer)."""
    return _load_table_rows(spec, f"{spec.path}[{spec.split}]", _hub_rows(spec), spec.column_map)


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


def load_hf_table(spec: DatasetSpec) -> list[Sample]:
    """Any dataset ``datasets.load_dataset`` can open (hub name, local folder), mapped by ``column_map``.

    Hub ids whose schema a task knows are routed to that task's loader by
    :func:`rarl.tasks.loading.load_hf` (the dispatch), before they reach this generic reader.
    """
    if not spec.path:
        raise UserError("data source 'hf' needs path: a dataset name or local folder")
    local = Path(spec.path).expanduser()
    if not local.exists():
        from rarl.data.hub import looks_local

        if looks_local(spec.path):
            raise UserError(f"{local}: dataset path not found (source 'hf')")
    return _load_table_rows(spec, f"{spec.path}[{spec.split}]", _hub_rows(spec), spec.column_map)
