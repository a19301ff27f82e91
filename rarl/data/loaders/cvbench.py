"""CV-Bench loader: test_2d/test_3d parquet (embedded images) or test.jsonl + ``img/``; lettered choices."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.data.loaders.common import (
    _each_record,
    _finish,
    _hub_rows,
    _image_root,
    _is_hub_dataset,
    _jsonl_rows,
    _require_path,
)
from rarl.data.loaders.tables import _read_parquet, _table_image
from rarl.data.rows import BadRow, RowCollector, identifier, image_file, text
from rarl.errors import UserError
from rarl.schema.sample import Sample
from rarl.tasks.cvbench import CVBENCH_TASKS

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

# --------------------------------------------------------------------------------------------------
# CV-Bench: test_2d/test_3d parquet (embedded images) or test.jsonl + img/; choices + "(A)" answers


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
            id=identifier(record, "idx", str(number)),
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
