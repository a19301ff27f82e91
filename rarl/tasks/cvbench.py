"""CV-Bench (Cambrian-1): its loader, per-task accuracy and the official combined score.

Loader (:func:`load_cvbench`): ``test_2d``/``test_3d`` parquet (embedded images), ``test.jsonl`` + ``img/``,
or the hub copy ``nyu-visionx/CV-Bench``; every item is a ``choice`` question whose answer is a choice's
letter (``(B)``), and ``spec.tasks`` keeps only the named tasks.

The benchmark's own formula: 2D accuracy = the mean of the ADE20K and COCO subset accuracies over the 2D
tasks (Count, Relation), 3D accuracy = the accuracy over the 3D tasks (Depth, Distance), combined score =
(2D + 3D) / 2. Item verdicts are rarl's choice matching (:func:`rarl.answers.answers_match`: the answer's
option letter or text against the reference letter).

Why the source column is required: without it the 2D score cannot be the ADE20K/COCO mean, and pooled 2D
accuracy is a different number (the subsets differ in size). rarl used to fall back to it silently; now
the ``official.*`` 2D and combined scores are refused (left out) with a warning in results.json
(``combined_warning``) and on stderr. Per-task accuracy and the 3D score do not need the source.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
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
from rarl.schema.results import MetricBlock, MetricValue
from rarl.schema.sample import Sample
from rarl.schema.scores import ScoreRow
from rarl.stats import mean_or_none, stratified_bootstrap_interval, wilson_interval
from rarl.tasks.base import ScoredRecord, Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

log = logging.getLogger(__name__)

CVBENCH_2D_TASKS = ("Count", "Relation")
CVBENCH_3D_TASKS = ("Depth", "Distance")
CVBENCH_2D_SOURCES = ("ADE20K", "COCO")
CVBENCH_TASKS = CVBENCH_2D_TASKS + CVBENCH_3D_TASKS
NO_SOURCE_WARNING = (
    "CV-Bench: {missing} of the {n} 2D items have no ADE20K/COCO 'source'; the official 2D and combined "
    "scores need it and are not reported (pooled 2D accuracy would be a different number)"
)


def cvbench_task(record: ScoredRecord) -> str | None:
    """The CV-Bench task of a record (``extra['task']``), normalised to Count/Relation/Depth/Distance."""
    task = (record.extra or {}).get("task")
    if not task:
        return None
    for known in CVBENCH_TASKS:
        if str(task).strip().lower() == known.lower():
            return known
    return str(task)


def cvbench_scores(rows: Sequence[ScoreRow]) -> MetricBlock | None:
    """Per-task ``rarl.accuracy`` and the ``official.*`` 2D, 3D and combined scores, from the items'
    ``rarl.accuracy`` rows (their ``task`` and ``source`` fields); ``None`` when no row has a task. Missing
    ADE20K/COCO sources refuse the 2D and combined scores (module docstring)."""
    tasks: dict[str, list[float]] = defaultdict(list)
    sources_2d: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.task is None or row.value is None:
            continue
        tasks[row.task].append(row.value)
        if row.task in CVBENCH_2D_TASKS and (row.source or "") in CVBENCH_2D_SOURCES:
            sources_2d[str(row.source)].append(row.value)
    if not tasks:
        return None
    order = [t for t in CVBENCH_TASKS if t in tasks] + sorted(t for t in tasks if t not in CVBENCH_TASKS)
    per_task = {
        name: MetricBlock(n=len(tasks[name]), values={"rarl.accuracy": _proportion(tasks[name])})
        for name in order
    }
    pooled_2d = [ok for name in CVBENCH_2D_TASKS for ok in tasks.get(name, [])]
    pooled_3d = [ok for name in CVBENCH_3D_TASKS for ok in tasks.get(name, [])]
    known_sources = [s for s in CVBENCH_2D_SOURCES if sources_2d.get(s)]
    missing = len(pooled_2d) - sum(len(sources_2d[s]) for s in known_sources)
    warning = None
    strata_2d = [sources_2d[s] for s in known_sources]
    if missing:
        warning = NO_SOURCE_WARNING.format(missing=missing, n=len(pooled_2d))
        log.warning("%s", warning)
        strata_2d = []
    strata_3d = [pooled_3d] if pooled_3d else []
    acc_2d = mean_or_none(mean_or_none(stratum) for stratum in strata_2d) if strata_2d else None
    acc_3d = mean_or_none(strata_3d[0]) if strata_3d else None
    both = acc_2d is not None and acc_3d is not None
    # Intervals of the averaged scores: the bootstrap resamples each subset on its own (stratified), so
    # every resample keeps the official formula's groups.
    halves = [len(strata_2d), len(strata_3d)]
    scores: list[tuple[str, float | None, list[list[float]], Any]] = [
        ("official.accuracy_2d", acc_2d, strata_2d, lambda means: sum(means) / len(means)),
        ("official.accuracy_3d", acc_3d, strata_3d, lambda means: means[0]),
    ]
    if both:
        combined = (acc_2d + acc_3d) / 2  # type: ignore[operator]
        scores.append(
            ("official.combined", combined, strata_2d + strata_3d, lambda means: _combined(means, halves))
        )
    values: dict[str, MetricValue] = {}
    for name, value, strata, combine in scores:
        if value is None:
            continue
        low, high = stratified_bootstrap_interval(strata, combine) or (None, None)
        values[name] = MetricValue(value, low, high, sum(len(stratum) for stratum in strata))
    notes = {
        "combined_rule": "(2D + 3D) / 2; 2D = mean of the ADE20K/COCO subset accuracies over Count+Relation; "
        "3D = accuracy over Depth+Distance; item verdicts: rarl's choice matching"
        + ("" if both or warning else " (2D or 3D absent: no combined score)"),
    }
    if warning:
        notes["combined_warning"] = warning
    return MetricBlock(
        n=sum(len(v) for v in tasks.values()),
        values=values,
        parts={"tasks": MetricBlock(parts=per_task)},
        notes=notes,
    )


def _proportion(values: Sequence[float]) -> MetricValue:
    low, high = wilson_interval(sum(values), len(values)) or (None, None)
    return MetricValue(sum(values) / len(values), low, high, len(values))


def _combined(means: list[Any], halves: list[int]) -> Any:
    """(2D + 3D) / 2 from per-stratum means (the first ``halves[0]`` are 2D)."""
    n_2d = halves[0]
    return (sum(means[:n_2d]) / n_2d + means[n_2d]) / 2


# --------------------------------------------------------------------------------------------------
# the loader: test_2d/test_3d parquet (embedded images) or test.jsonl + img/; choices + "(A)" answers


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


TASK = Task("cvbench", load=load_cvbench, hub_ids=("nyu-visionx/cv-bench",), aggregate=cvbench_scores)

__all__ = [
    "CVBENCH_2D_SOURCES",
    "CVBENCH_2D_TASKS",
    "CVBENCH_3D_TASKS",
    "CVBENCH_TASKS",
    "TASK",
    "cvbench_scores",
    "cvbench_task",
    "load_cvbench",
]
