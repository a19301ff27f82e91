"""The one aggregation: every number of results.json and of ``rarl report`` is computed here, from score rows.

Why one function over rows: an item's outcome is decided once, by its benchmark's scorer, and written as
rows of ``scores.jsonl`` (:class:`~rarl.schema.scores.ScoreRow`); everything downstream — results.json and
results.md, the report's tables, checkpoint selection, the demo's numbers — is a grouping of those rows.
Nothing here re-decides an outcome, and a count is never rebuilt from a percentage: the intervals are
computed from the rows themselves.

Shapes (:mod:`rarl.schema.results`): per dataset row label and over all items a
:class:`~rarl.schema.results.MetricBlock` with the headline ``rarl.accuracy`` and the benchmark's
``official.*`` item metrics, one sub-block per question type with every metric its items have, and the
task's own dataset-level numbers (CV-Bench's combined score); per judge a
:class:`~rarl.schema.results.JudgeBlock` per row label and overall.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from rarl.schema.results import JudgeBlock, JudgeResults, MetricBlock, MetricValue, RuleMetrics, RunResults
from rarl.schema.scores import ScoreRow
from rarl.stats import (
    BOOTSTRAP,
    CONFIDENCE,
    WILSON,
    Estimate,
    PairedDifference,
    estimate,
    estimate_interval,
    mean_or_none,
    paired_difference,
    wilson_interval,
)
from rarl.tasks import task_for

QUESTION_TYPES = ("closed", "choice", "open")
HEADLINE = "rarl.accuracy"  # the one rarl number over every item of a dataset
JUDGE_PREFIX = "judge."

# How the intervals of rule metrics are computed (also written into results.json).
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


@dataclass
class Item:
    """One item's rows: its grouping fields (from its first row) and its value per metric."""

    first: ScoreRow
    values: dict[str, float | None] = field(default_factory=dict)
    rows: dict[str, ScoreRow] = field(default_factory=dict)


def items_of(rows: Iterable[ScoreRow], *, judges: bool = False) -> list[Item]:
    """Rows grouped by item key, in first-seen order (rule rows only unless ``judges``)."""
    found: dict[str, Item] = {}
    for row in rows:
        if row.metric.startswith(JUDGE_PREFIX) and not judges:
            continue
        item = found.setdefault(row.key, Item(row))
        item.values[row.metric] = row.value
        item.rows[row.metric] = row
    return list(found.values())


def metric_value(values: Sequence[float]) -> MetricValue:
    """Mean with its 95% interval (Wilson for 0/1 values, the seeded bootstrap otherwise) and its n."""
    interval, _ = estimate_interval(list(values))
    low, high = interval if interval is not None else (None, None)
    return MetricValue(mean_or_none(values), low, high, len(values))  # type: ignore[arg-type]


def _metrics(items: Sequence[Item], names: Iterable[str]) -> dict[str, MetricValue]:
    """Every named metric that some item has a value for, over those items."""
    out: dict[str, MetricValue] = {}
    for name in names:
        values = [v for item in items if (v := item.values.get(name)) is not None]
        if values:
            out[name] = metric_value(values)
    return out


def _names(items: Sequence[Item], *, official: bool) -> list[str]:
    names = dict.fromkeys(name for item in items for name in item.values)
    return [name for name in names if official or not name.startswith("official.")]


def group_block(items: Sequence[Item]) -> MetricBlock:
    """One group's block (a dataset row or all items).

    A benchmark's ``official.*`` numbers only over that benchmark's items, never over a mix ("All" of a
    multi-benchmark run has none); its dataset-level numbers (CV-Bench's combined score) come from its task.
    """
    tasks = {task_for(item.first.benchmark, item.first.dataset).name for item in items}
    single = len(tasks) == 1
    parts: dict[str, MetricBlock] = {}
    for qtype in QUESTION_TYPES:
        of_type = [item for item in items if item.first.question_type == qtype]
        if of_type:
            parts[qtype] = MetricBlock(
                n=len(of_type), values=_metrics(of_type, _names(of_type, official=single))
            )
    headline = [
        name for name in _names(items, official=single) if name == HEADLINE or name.startswith("official.")
    ]
    if single and items:
        task = task_for(items[0].first.benchmark, items[0].first.dataset)
        if task.aggregate is not None:
            extra = task.aggregate([item.rows[HEADLINE] for item in items if HEADLINE in item.rows])
            if extra is not None:
                parts[task.name] = extra
    return MetricBlock(n=len(items), values=_metrics(items, headline), parts=parts)


def rule_metrics(rows: Sequence[ScoreRow], *, bertscore_model: str | None = None) -> RuleMetrics:
    """The rule metrics of a run: over all items and per dataset row label (in first-seen order)."""
    items = items_of(rows)
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.first.label, []).append(item)
    return RuleMetrics(
        n=len(items),
        bertscore_model=bertscore_model,
        intervals=INTERVALS,
        families=METRIC_FAMILIES,
        overall=group_block(items) if items else MetricBlock(n=0),
        datasets={label: group_block(members) for label, members in groups.items()},
    )


def judge_names(rows: Iterable[ScoreRow]) -> list[str]:
    """The judges that have rows, in first-seen order."""
    names: dict[str, None] = {}
    for row in rows:
        if row.metric.startswith(JUDGE_PREFIX):
            names[row.metric[len(JUDGE_PREFIX) :].rsplit(".", 1)[0]] = None
    return list(names)


def _percent_interval(successes: int, n: int) -> tuple[float, float] | None:
    interval = wilson_interval(successes, n)
    return None if interval is None else (100.0 * interval[0], 100.0 * interval[1])


def judge_block(final: Sequence[ScoreRow], reasoning: Sequence[ScoreRow]) -> JudgeBlock:
    """Reasoning % and Final % of one group, with Wilson intervals from the counts.

    Every item stays in the denominator (a failed judgement is a 0 row: a judge failure must not make a
    model look better) and the failures are counted beside the percentages; a group where no judgement
    succeeded has no percentages (0 % would read as a result). Reasoning % is over the items whose
    reasoning the prompt scores (the paper's prompt: those with a reference reasoning); "n/a" (``None``)
    when there are none.
    """
    n = len(final)
    failed = sum(row.failed for row in final)
    scored = n > 0 and failed < n
    final_k = int(sum(row.value or 0 for row in final))
    applicable = [row for row in reasoning if row.value is not None]
    reasoning_k = int(sum(row.value or 0 for row in applicable))
    reasoning_ok = scored and any(not row.failed for row in applicable)
    return JudgeBlock(
        n=n,
        judged=n - failed,
        failed=failed,
        reasoning_n=len(applicable),
        reasoning=100.0 * reasoning_k / len(applicable) if reasoning_ok else None,
        final=100.0 * final_k / n if scored else None,
        reasoning_ci=_percent_interval(reasoning_k, len(applicable)) if reasoning_ok else None,
        final_ci=_percent_interval(final_k, n) if scored else None,
    )


def judge_summary(rows: Sequence[ScoreRow], judge: str) -> tuple[JudgeBlock, dict[str, JudgeBlock]]:
    """One judge's block over all its items and per dataset row label."""
    final = [row for row in rows if row.metric == f"{JUDGE_PREFIX}{judge}.final"]
    reasoning = [row for row in rows if row.metric == f"{JUDGE_PREFIX}{judge}.reasoning"]
    labels = list(dict.fromkeys(row.label for row in final))
    per_label = {
        label: judge_block(
            [row for row in final if row.label == label], [row for row in reasoning if row.label == label]
        )
        for label in labels
    }
    return judge_block(final, reasoning), per_label


def aggregate_results(
    results: RunResults,
    rows: list[ScoreRow],
    judges: Mapping[str, JudgeResults],
    failures: Mapping[str, str],
    bertscore_model: str | None,
) -> RunResults:
    """``results`` with every number taken from the score rows by the one aggregation
    (:mod:`rarl.eval.aggregate`): the rule metrics, and each described judge's blocks (a judge without
    rows here keeps the blocks it came with)."""
    scored: dict[str, JudgeResults] = {}
    with_rows = set(judge_names(rows))
    for name, judge in judges.items():
        if name in with_rows:
            overall, per_label = judge_summary(rows, name)
            judge = replace(judge, overall=overall, datasets=per_label)
        scored[name] = judge
    return replace(
        results,
        rule_metrics=rule_metrics(rows, bertscore_model=bertscore_model),
        judges=scored,
        judge_failures=dict(failures),
    )


# --------------------------------------------------------------------------------------------------
# comparisons and subgroups of item outcomes (rarl report's paired and subgroup tables)


def outcomes_of(rows: Iterable[ScoreRow], metric: str, *, skip_failed: bool = False) -> dict[str, float]:
    """key → value of one metric (items the metric leaves out are absent; ``skip_failed``: a judge's
    failed items too, for agreement, where a failure is no rating)."""
    return {
        row.key: row.value
        for row in rows
        if row.metric == metric and row.value is not None and not (skip_failed and row.failed)
    }


def item_groups(rows: Sequence[ScoreRow], *, by_type: bool) -> dict[tuple[str, str], set[str]]:
    """Item keys per (dataset row, question type); type "all" = the whole dataset; ("All", "all") = all."""
    groups: dict[tuple[str, str], set[str]] = {}
    for item in items_of(rows):
        label, qtype = item.first.label, item.first.question_type
        for group in [(label, "all"), ("All", "all")] + ([(label, qtype)] if by_type else []):
            groups.setdefault(group, set()).add(item.first.key)
    return groups


@dataclass(frozen=True)
class PairedCell:
    """One metric's paired comparison of two runs in one (dataset row, question type) group."""

    group: tuple[str, str]
    matched: int
    only_a: int
    only_b: int
    result: PairedDifference | None
    estimate_a: Estimate | None = None  # each run's mean over the matched items, with its own interval
    estimate_b: Estimate | None = None


def paired_cells(
    rows_a: Sequence[ScoreRow], rows_b: Sequence[ScoreRow], metric: str, *, by_type: bool = True
) -> list[PairedCell]:
    """B vs A on the items both runs have (matched by key) and the metric scores in both, per group
    (dataset row and, with ``by_type``, question type).

    A per-type group that would repeat its dataset's "all" group (one question type only) is left out;
    items only one run has are counted, never silently dropped from view.
    """
    groups_a, groups_b = item_groups(rows_a, by_type=by_type), item_groups(rows_b, by_type=by_type)
    order = list(dict.fromkeys([*groups_a, *groups_b]))
    types_of: dict[str, set[str]] = {}
    for dataset, qtype in order:
        types_of.setdefault(dataset, set()).add(qtype)
    order = [g for g in order if g[1] == "all" or len(types_of[g[0]] - {"all"}) > 1]
    order.sort(key=lambda g: (g[0] == "All", g[0], g[1] != "all", g[1]))
    a_scores, b_scores = outcomes_of(rows_a, metric), outcomes_of(rows_b, metric)
    cells = []
    for group in order:
        keys_a, keys_b = groups_a.get(group, set()), groups_b.get(group, set())
        common = [k for k in sorted(keys_a & keys_b) if k in a_scores and k in b_scores]
        values_a, values_b = [a_scores[k] for k in common], [b_scores[k] for k in common]
        result = paired_difference(values_a, values_b)
        estimates = (estimate(values_a), estimate(values_b)) if common else (None, None)
        cells.append(
            PairedCell(group, len(common), len(keys_a - keys_b), len(keys_b - keys_a), result, *estimates)
        )
    return cells


SUBGROUP_FIELDS = ("label", "question_type", "modality", "organ")


def subgroup_keys(rows: Sequence[ScoreRow], fields: Sequence[str]) -> dict[tuple[str, ...], set[str]]:
    """Item keys per combination of grouping fields (a field an item lacks reads "–")."""
    cells: dict[tuple[str, ...], set[str]] = {}
    for item in items_of(rows):
        cell = tuple(str(getattr(item.first, name) or "–") for name in fields)
        cells.setdefault(cell, set()).add(item.first.key)
    return cells


def group_estimate(rows: Sequence[ScoreRow], metric: str, keys: Iterable[str]) -> Estimate | None:
    """The mean of one metric over the given items, with its interval (Wilson for 0/1) and n."""
    scored = outcomes_of(rows, metric)
    values = [scored[k] for k in sorted(keys) if k in scored]
    return estimate(values) if values else None


__all__ = [
    "INTERVALS",
    "METRIC_FAMILIES",
    "SUBGROUP_FIELDS",
    "Item",
    "PairedCell",
    "aggregate_results",
    "group_block",
    "group_estimate",
    "item_groups",
    "items_of",
    "judge_block",
    "judge_names",
    "judge_summary",
    "metric_value",
    "outcomes_of",
    "paired_cells",
    "rule_metrics",
    "subgroup_keys",
]
