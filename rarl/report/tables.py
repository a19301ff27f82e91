"""Paper-style tables, judge agreement and plots from one or more evaluation runs.

Why: the paper reports, per dataset (rows), each judge's Reasoning % and Final % (Tables 2, 3 and 6 have
that shape: one column group per model or per inference prompt). ``rarl report`` builds those tables from
the evaluation output directories, adds the rule metrics, CV-Bench scores, optional human ratings from
``rarl review``, and Cohen's kappa between judges, humans and the rule verdicts — so a reader can see how
much the LLM judges can be trusted before trusting their percentages. Every table is written as markdown
and CSV.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from rarl.errors import UserError
from rarl.eval.aggregate import (
    METRIC_FAMILIES,
    SUBGROUP_FIELDS,
    group_estimate,
    item_groups,
    judge_names,
    outcomes_of,
    paired_cells,
    subgroup_keys,
)
from rarl.io import atomic_write_text, check_output_directory
from rarl.schema.records import PredictionRecord
from rarl.schema.results import JudgeBlock, MetricBlock, RunResults, read_results
from rarl.schema.scores import SCORES_FILE, ScoreRow, read_scores
from rarl.stats import (
    BOOTSTRAP,
    SMALL_N,
    WILSON,
    Estimate,
    cohen_kappa,
    estimate,
    kappa_interval,
)
from rarl.tasks.cvbench import CVBENCH_2D_TASKS, CVBENCH_3D_TASKS

log = logging.getLogger(__name__)

RULE_METRIC = "rarl.accuracy"  # the per-item rule outcome of paired, subgroup and agreement tables
HUMAN = "Human"
# 0/1 per item: a Wilson interval follows from value and n
PROPORTIONS = {"rarl.accuracy", "rarl.exact", "official.accuracy", "llava_med.closed_accuracy"}
INTERVAL_NOTE = (
    f"Cells: value [95% CI] n=items. Proportions (accuracies, exact match, judge verdicts): {WILSON}; "
    f"means of graded scores (token recall/F1, BERTScore, mean human ratings) and kappa: {BOOTSTRAP}."
)


@dataclass
class Table:
    """A rendered-agnostic table: a title, column headers, rows of cells, and footnotes.

    A cell may be an :class:`~rarl.stats.Estimate`: markdown shows ``value [low, high] n=…`` (``†`` when
    n < 20), CSV spreads it over four columns (value, CI low, CI high, n) so that nothing is lost.
    """

    title: str
    headers: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    slug: str = "table"
    digits: dict[str, int] = field(default_factory=dict)  # header -> decimals (default 1 for estimates)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |"]
        numeric = [
            all(isinstance(row[i], (int, float, Estimate)) for row in self.rows if row[i] is not None)
            and any(row[i] is not None for row in self.rows)
            for i in range(len(self.headers))
        ]
        lines.append("|" + "|".join("---:" if right else "---" for right in numeric) + "|")
        lines += [
            "| "
            + " | ".join(_cell(v, self.digits.get(h)) for h, v in zip(self.headers, row, strict=True))
            + " |"
            for row in self.rows
        ]
        if any(isinstance(v, Estimate) and v.small for row in self.rows for v in row):
            lines += ["", f"† fewer than {SMALL_N} items: the interval is wide and only approximate."]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        spread = [any(isinstance(row[i], Estimate) for row in self.rows) for i in range(len(self.headers))]
        header: list[str] = []
        for name, wide in zip(self.headers, spread, strict=True):
            header += [name, f"{name} CI low", f"{name} CI high", f"{name} n"] if wide else [name]
        writer.writerow(header)
        for row in self.rows:
            cells: list[Any] = []
            for value, wide in zip(row, spread, strict=True):
                if wide:
                    est = value if isinstance(value, Estimate) else Estimate(value)
                    cells += [_csv_value(est.value), _csv_value(est.low), _csv_value(est.high), est.n]
                else:
                    cells.append(_csv_value(value))
            writer.writerow(["" if v is None else v for v in cells])
        return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    return None if value is None else (round(value, 4) if isinstance(value, float) else value)


# A judge's Reasoning % where its prompt scores no item's reasoning (the paper's judge on a benchmark
# without reference reasoning), as the paper's tables show it.
NOT_APPLICABLE = "n/a"


def _cell(value: Any, digits: int | None = None) -> str:
    if value is None:
        return "–"
    if isinstance(value, Estimate):
        if value.value is None:
            return "–" if value.n is None else f"– n={value.n}"
        places = 1 if digits is None else digits
        text = f"{value.value:.{places}f}"
        if value.low is not None and value.high is not None:
            text += f" [{value.low:.{places}f}, {value.high:.{places}f}]"
        if value.n is not None:
            text += f" n={value.n}" + (" †" if value.small else "")
        return text
    if isinstance(value, float):
        return f"{value:.{2 if digits is None else digits}f}"
    return str(value).replace("|", "\\|")


def _block_estimate(block: MetricBlock | None, name: str, n: int | None = None) -> Estimate | None:
    """An estimate in % from an aggregated block: the metric's value, its interval and its n.

    A run with ``scores.jsonl`` has its blocks aggregated from the rows (:func:`load_run`); a results.json
    written before intervals existed, read without rows, shows its numbers without an interval (a count is
    never rebuilt from a percentage).
    """
    metric = block.metric(name) if block is not None else None
    if metric is None:
        return None
    count = metric.n if metric.n is not None else n
    return Estimate(metric.value, metric.low, metric.high, count if isinstance(count, int) else None).scaled(
        100.0
    )


# --------------------------------------------------------------------------------------------------
# runs


@dataclass
class RunData:
    """One evaluation run as the report sees it."""

    label: str
    results: RunResults
    records: list[PredictionRecord] = field(default_factory=list)
    judgements: dict[str, dict[str, Any]] = field(default_factory=dict)  # judge -> key -> Judgement
    human: dict[str, dict[str, float]] | None = None  # key -> mean human scores
    # rater -> key -> that clinician's own scores (for agreement among several clinicians)
    human_raters: dict[str, dict[str, dict[str, float]]] | None = None
    scores: list[ScoreRow] = field(default_factory=list)  # scores.jsonl: one row per item and metric

    @property
    def judges(self) -> list[str]:
        return list(self.results.judges)

    @property
    def datasets(self) -> list[str]:
        return self.results.dataset_names


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read an eval output directory (``results.json``, ``predictions.jsonl``, ``judgements/*.jsonl``)."""
    from rarl.schema.judgements import read_judgements
    from rarl.schema.rundir import JUDGEMENTS_DIR, PREDICTIONS_FILE, RESULTS_FILE, read_predictions

    source = Path(path)
    run_dir = source.parent if source.is_file() else source
    results_path = source if source.is_file() else source / RESULTS_FILE
    if not results_path.is_file():
        raise UserError(f"{run_dir}: no {RESULTS_FILE} here (run `rarl eval` first)")
    results = read_results(results_path)
    records = read_predictions(run_dir / PREDICTIONS_FILE) if (run_dir / PREDICTIONS_FILE).exists() else []
    judgements = {}
    for name in results.judges:
        file = run_dir / JUDGEMENTS_DIR / f"{name}.jsonl"
        if file.exists():
            judgements[name] = {j.key: j for j in read_judgements(file)}
    scores_path = run_dir / SCORES_FILE
    if scores_path.exists():
        scores = read_scores(scores_path)
        # Every number of the report from the rows, by the one aggregation that wrote results.json.
        from rarl.eval.aggregate import aggregate_results

        model = results.rule_metrics.bertscore_model if results.rule_metrics else None
        results = aggregate_results(results, scores, results.judges, results.judge_failures, model)
    else:  # a run written before scores.jsonl: the same scorers, once, here (BERTScore left out)
        from rarl.eval.metrics import item_scores, judge_score_rows, score_rows

        scores = score_rows(records, item_scores(records, bertscore=False)) if records else []
        for name, by_key in judgements.items():
            scores += judge_score_rows(records, name, list(by_key.values()))
    return RunData(
        label=label or run_dir.name, results=results, records=records, judgements=judgements, scores=scores
    )


def attach_human(runs: Sequence[RunData], db_path: str | Path) -> None:
    """Join the mean human ratings of a ``rarl review`` database to each run's own outputs.

    A rating is joined to a record only when it rated that record's exact output in that run
    (``PredictionRecord.output_id``: model, prompt, item and the output's fingerprint), so a second run of
    a model (the other prompt, a regenerated file) never inherits ratings nobody gave it. One fallback: a
    run none of whose outputs were rated under its model name, whose exact outputs were rated under one
    other name (the adapter path added to the name, say), uses those with a warning.
    """
    try:
        from rarl.review.store import load_ratings, summarize_ratings
    except ImportError as exc:  # the review module is optional for reports
        raise UserError(f"--human needs rarl.review.store ({exc})") from None
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: ratings database not found")
    rows = load_ratings(db_path)  # the database read once
    by_output, legacy = summarize_ratings(rows)
    by_rater: dict[tuple[str, str, str, str], dict[str, dict[str, float]]] = {}
    for row in rows:
        if row["output_fp"]:
            ident = (row["model"], row["prompt"], row["item_key"], row["output_fp"])
            by_rater.setdefault(ident, {})[row["rater"]] = {
                "reasoning_score": row["reasoning_score"],
                "prediction_score": row["prediction_score"],
            }
    if legacy:
        log.warning(
            "%s: %d ratings from an older rarl name no rated output and are not joined to any run",
            db_path,
            legacy,
        )
    by_text: dict[tuple[str, str, str], dict[str, dict[str, float]]] = {}
    for (model, prompt, key, output_fp), scores in by_output.items():
        by_text.setdefault((prompt, key, output_fp), {})[model] = scores
    for run in runs:
        exact = {r.key: by_output[r.output_id] for r in run.records if r.output_id in by_output}
        rated = {r.key: r.output_id for r in run.records if r.output_id in by_output}
        if not exact:
            rated_elsewhere = [(r, by_text.get(r.output_id[1:], {})) for r in run.records]
            names = {model for r, by_model in rated_elsewhere for model in by_model if model != r.model}
            if len(names) == 1:
                (name,) = names
                exact = {r.key: by_model[name] for r, by_model in rated_elsewhere if name in by_model}
                rated = {r.key: (name, *r.output_id[1:]) for r, by_m in rated_elsewhere if name in by_m}
                log.warning(
                    "%s: ratings of run %s's outputs are under another model name (%s); using them",
                    db_path,
                    run.label,
                    name,
                )
        run.human = exact or None
        raters: dict[str, dict[str, dict[str, float]]] = {}
        for key, ident in rated.items():
            for rater, scores in by_rater.get(ident, {}).items():
                raters.setdefault(rater, {})[key] = scores
        run.human_raters = raters or None


# --------------------------------------------------------------------------------------------------
# statistics


def _pairs(first: dict[str, int], second: dict[str, int]) -> tuple[list[int], list[int]]:
    keys = [key for key in first if key in second]
    return [first[k] for k in keys], [second[k] for k in keys]


def rater_scores(run: RunData, kind: str) -> dict[str, dict[str, int]]:
    """Binary per-item scores of every rater in a run: judges (ok items only), Human, and Rule (the run's
    ``rarl.accuracy`` rows)."""
    field_name = f"{kind}_score"
    metric = "final" if kind == "prediction" else "reasoning"
    raters: dict[str, dict[str, int]] = {}
    for judge in run.judges:  # a failed judgement is no rating; nor is a reasoning the prompt leaves n/a
        scored = outcomes_of(run.scores, f"judge.{judge}.{metric}", skip_failed=True)
        if scored or judge in run.judgements:
            raters[judge] = {key: int(value) for key, value in scored.items()}
    if run.human:
        raters[HUMAN] = {k: int(v[field_name] >= 0.5) for k, v in run.human.items() if field_name in v}
    if kind == "prediction" and run.scores:
        raters["Rule"] = {key: int(value) for key, value in outcomes_of(run.scores, RULE_METRIC).items()}
    return raters


# --------------------------------------------------------------------------------------------------
# per-item outcomes and coverage


def item_outcomes(run: RunData) -> dict[str, dict[str, float]]:
    """Per-item 0/1 outcomes by metric, read from the run's score rows: ``rarl Acc.`` and each judge's
    ``Final``/``Reasoning``.

    A judge's failed item counts as 0, as in its percentages (every sample stays in the denominator).
    Paired comparisons and subgroup tables are computed from these; nothing here re-decides an outcome.
    """
    return {name: outcomes_of(run.scores, metric) for name, metric in outcome_metrics(run).items()}


def outcome_metrics(run: RunData) -> dict[str, str]:
    """The per-item metrics the paired and subgroup tables compare, by column name."""
    found: dict[str, str] = {}
    if run.scores:
        found["rarl Acc."] = RULE_METRIC
        for judge in judge_names(run.scores):
            for kind in ("Final", "Reasoning"):
                found[f"{judge} {kind}"] = f"judge.{judge}.{kind.lower()}"
    return found


def _dataset_keys(run: RunData) -> dict[str, set[str]]:
    groups = item_groups(run.scores, by_type=False)
    return {label: keys for (label, _), keys in groups.items() if label != "All"}


def _dataset_n(run: RunData, dataset: str) -> int | None:
    metrics = run.results.rule_metrics
    block = metrics.block(dataset) if metrics else None
    n = block.n if block else None
    if n is None and dataset == "All":
        n = run.results.n
    return n


def coverage(runs: Sequence[RunData]) -> tuple[dict[str, str], str | None]:
    """Whether the compared runs cover the same items, per dataset row and overall.

    Returns ``({row: text}, warning)``: ``text`` is "same items" or says how they differ; ``warning`` is a
    one-line note for the tables (``None`` when every row matches). Items are matched by their key
    (dataset/split/id) when predictions are available, otherwise only the counts can be compared.
    """
    if len(runs) < 2:
        return {}, None
    rows: dict[str, str] = {}
    differing: list[str] = []
    with_records = all(run.scores for run in runs)
    keys = [_dataset_keys(run) for run in runs] if with_records else []
    for dataset in [*_dataset_rows(runs), "All"]:
        if with_records:
            sets = [set().union(*k.values()) if dataset == "All" else k.get(dataset, set()) for k in keys]
            common = set.intersection(*sets)
            same = all(s == sets[0] for s in sets)
            counts = " / ".join(f"{run.label} {len(s)}" for run, s in zip(runs, sets, strict=True))
            rows[dataset] = "same items" if same else f"⚠ differ: {counts}, {len(common)} in all"
        else:
            counts_n = [_dataset_n(run, dataset) for run in runs]
            same = len(set(counts_n)) == 1 and counts_n[0] is not None
            rows[dataset] = (
                "same n (items unchecked: no predictions.jsonl)"
                if same
                else "⚠ differ: "
                + " / ".join(f"{run.label} n={n}" for run, n in zip(runs, counts_n, strict=True))
            )
        if not same:
            differing.append(dataset)
    if not differing:
        return rows, None
    warning = (
        "⚠ The compared runs do NOT cover the same items (rows: " + ", ".join(differing) + "): "
        "side-by-side columns are computed on different items and are not comparable item for item; "
        "the paired comparison uses only the items all runs share."
    )
    return rows, warning


# --------------------------------------------------------------------------------------------------
# tables


def _dataset_rows(runs: Sequence[RunData]) -> list[str]:
    rows: list[str] = []
    for run in runs:
        rows += [name for name in run.datasets if name not in rows]
    return rows


def _human_estimates(run: RunData, keys: set[str] | None) -> tuple[int, Estimate | None, Estimate | None]:
    """(n rated, Reasoning %, Final %) of the mean human ratings over rated items within ``keys``."""
    assert run.human is not None
    items = [v for k, v in run.human.items() if keys is None or k in keys]
    if not items:
        return 0, None, None
    reasoning = estimate([v["reasoning_score"] for v in items]).scaled(100.0)
    final = estimate([v["prediction_score"] for v in items]).scaled(100.0)
    return len(items), reasoning, final


def _judge_estimate(block: JudgeBlock | None, kind: str) -> Estimate | None:
    """A judge's pass rate (%) with its Wilson interval, as the aggregation computed them from the rows."""
    rate = getattr(block, kind) if block is not None else None
    if block is None or rate is None or not block.n:
        return None
    n = block.reasoning_n if kind == "reasoning" and block.reasoning_n is not None else block.n
    if not n:
        return None
    low, high = getattr(block, f"{kind}_ci") or (None, None)
    return Estimate(rate, low, high, n)


def _with_coverage(
    runs: Sequence[RunData], headers: list[str], rows: list[list[Any]], notes: list[str]
) -> None:
    """Add the coverage column and warning in place when the compared runs cover different items."""
    per_row, warning = coverage(runs)
    if warning is None:
        return
    headers.append("Items")
    for row in rows:
        row.append(per_row.get(row[0], ""))
    notes.insert(0, warning)


def judge_table(runs: Sequence[RunData]) -> Table | None:
    """Datasets as rows; per run and judge (and Human) a Reasoning % and a Final % column."""
    if not any(run.judges or run.human for run in runs):
        return None
    prefix = len(runs) > 1
    headers = ["Dataset"]
    for run in runs:
        for judge in run.judges + ([HUMAN] if run.human else []):
            name = f"{run.label} · {judge}" if prefix else judge
            headers += [f"{name} Reasoning %", f"{name} Final %"]
    datasets = _dataset_rows(runs)
    rows = []
    for dataset in [*datasets, "All"]:
        row: list[Any] = [dataset]
        for run in runs:
            for judge in run.judges:
                block = run.results.judges[judge].block(dataset)
                reasoning: Any = _judge_estimate(block, "reasoning")
                if reasoning is None and block is not None and block.reasoning_n == 0:
                    reasoning = NOT_APPLICABLE  # no item here has a reference reasoning to compare with
                row += [reasoning, _judge_estimate(block, "final")]
            if run.human:
                keys = None
                if dataset != "All" and run.scores:
                    keys = _dataset_keys(run).get(dataset, set())
                _, reasoning, final = _human_estimates(run, keys)
                row += [reasoning, final]
        rows.append(row)
    notes = [
        INTERVAL_NOTE,
        "Every sample is in the denominator: an item the judge could not score (parse or API failure) "
        "counts as 0. With the paper's judge prompt, Reasoning % is over the items that have a reference "
        "reasoning (its n); n/a where none has.",
    ]
    for run in runs:
        for judge in run.judges:
            info = run.results.judges[judge]
            stats = info.stats
            prompt = f"{info.prompt} {info.prompt_version}" if info.prompt else info.prompt_version
            notes.append(
                f"{run.label} · {judge} = {info.model} (prompt {prompt}): "
                f"{stats.ok}/{stats.n} judged, {stats.parse_errors} parse "
                f"failures, {stats.api_errors} API failures"
            )
        if run.human:
            n, _, _ = _human_estimates(run, None)
            notes.append(f"{run.label} · Human: mean of raters over the {n} rated items only (not all items)")
    _with_coverage(runs, headers, rows, notes)
    title = "LLM-judge Reasoning % / Final % per dataset (shape of the paper's Tables 2, 3 and 6)"
    return Table(title, headers, rows, notes, slug="judges")


# (column, sub-block of a dataset's rule metrics or None for the dataset block itself, metric name)
# Every header names its metric family (rarl / official / llava_med): see METRIC_FAMILIES.
RULE_COLUMNS = [
    ("rarl Acc. %", None, "rarl.accuracy"),
    ("rarl Closed %", "closed", "rarl.accuracy"),
    ("rarl Choice %", "choice", "rarl.accuracy"),
    ("rarl Open EM %", "open", "rarl.exact"),
    ("rarl Open recall %", "open", "rarl.token_recall"),
    ("rarl Open F1 %", "open", "rarl.token_f1"),
    ("rarl BERTScore %", "open", "rarl.bertscore"),
    ("official Acc. %", None, "official.accuracy"),
    ("official BLEU %", None, "official.bleu"),
    ("official CV-Bench %", "cvbench", "official.combined"),
    ("llava_med Closed %", "closed", "llava_med.closed_accuracy"),
    ("llava_med Open recall %", "open", "llava_med.open_recall"),
]


def _rule_estimate(block: MetricBlock | None, sub: str | None, name: str) -> Estimate | None:
    if block is None:
        return None
    inner = block if sub is None else block.part(sub)
    n = block.n if sub == "cvbench" else None  # CV-Bench's combined score: over the dataset's items
    return _block_estimate(inner, name, n)


def rule_table(runs: Sequence[RunData]) -> Table:
    """Datasets as rows; per run the rule metrics (columns empty for every row are left out)."""
    datasets = _dataset_rows(runs)
    prefix = len(runs) > 1
    columns: list[tuple[str, RunData, str | None, str]] = []
    for run in runs:
        metrics = run.results.rule_metrics
        blocks = [metrics.block(d) for d in [*datasets, "All"]] if metrics else []
        for name, sub, metric in RULE_COLUMNS:
            if any(_rule_estimate(block, sub, metric) is not None for block in blocks):
                columns.append((f"{run.label} · {name}" if prefix else name, run, sub, metric))
    rows = []
    for dataset in [*datasets, "All"]:
        row: list[Any] = [dataset]
        for _, run, sub, metric in columns:
            metrics = run.results.rule_metrics
            block = metrics.block(dataset) if metrics else None
            row.append(_rule_estimate(block, sub, metric))
        rows.append(row)
    notes = [
        INTERVAL_NOTE,
        "rarl Acc. %: closed/choice matching and open exact match over all items; BERTScore only on open "
        "questions; official CV-Bench % is the combined score (details in the CV-Bench table).",
        *(f"{family}: {meaning}." for family, meaning in METRIC_FAMILIES.items()),
    ]
    for run in runs:
        metrics = run.results.rule_metrics
        if not metrics:
            notes.append(f"{run.label}: no rule metrics in results.json")
            continue
        model = metrics.bertscore_model
        notes.append(
            f"{run.label}: {run_description(run.results)}" + (f", BERTScore model {model}" if model else "")
        )
    headers = ["Dataset"] + [c[0] for c in columns]
    _with_coverage(runs, headers, rows, notes)
    return Table("Rule metrics per dataset", headers, rows, notes, slug="rule_metrics")


def cvbench_table(runs: Sequence[RunData]) -> Table | None:
    """CV-Bench per task (with intervals), 2D, 3D and the official combined score; one column per run."""
    columns: list[tuple[str, MetricBlock]] = []
    for run in runs:
        metrics = run.results.rule_metrics
        for dataset, block in (metrics.datasets if metrics else {}).items():
            cv = block.part("cvbench")
            if cv is not None:
                label = f"{run.label} · {dataset}" if len(runs) > 1 else dataset
                columns.append((label + " %", cv))
    if not columns:
        return None
    tasks: list[str] = []
    for _, cv in columns:
        tasks += [t for t in _cv_tasks(cv) if t not in tasks]
    rows: list[list[Any]] = [
        [f"{task} (rarl)"] + [_block_estimate(_cv_tasks(cv).get(task), "rarl.accuracy") for _, cv in columns]
        for task in tasks
    ]

    def task_n(cv: MetricBlock, names: tuple[str, ...]) -> int:
        by_task = _cv_tasks(cv)
        return sum(by_task[t].n or 0 for t in names if t in by_task)

    for label, name, names in (
        ("2D (official)", "official.accuracy_2d", CVBENCH_2D_TASKS),
        ("3D (official)", "official.accuracy_3d", CVBENCH_3D_TASKS),
        ("Combined (official)", "official.combined", CVBENCH_2D_TASKS + CVBENCH_3D_TASKS),
    ):
        rows.append([label] + [_cv_estimate(cv, name, task_n(cv, names)) for _, cv in columns])
    notes = [
        INTERVAL_NOTE,
        "2D, 3D and Combined average task/subset accuracies; their intervals come from a bootstrap that "
        "resamples within each task/subset (stratified).",
    ]
    notes += [f"{label}: {cv.notes.get('combined_rule')}" for label, cv in columns]
    notes += [
        f"{label}: ⚠ {cv.notes['combined_warning']}"
        for label, cv in columns
        if cv.notes.get("combined_warning")
    ]
    return Table("CV-Bench", ["Task"] + [c[0] for c in columns], rows, notes, slug="cvbench")


def _cv_tasks(cv: MetricBlock) -> Mapping[str, MetricBlock]:
    tasks = cv.part("tasks")
    return tasks.parts if tasks is not None else {}


def _cv_estimate(cv: MetricBlock, name: str, n: int) -> Estimate | None:
    metric = cv.metric(name)
    if metric is None:
        return None
    return Estimate(metric.value, metric.low, metric.high, n or None).scaled(100.0)


def agreement_table(runs: Sequence[RunData]) -> Table | None:
    """Cohen's kappa (with a bootstrap CI) and raw agreement between every pair of raters per score."""
    rows = []
    for run in runs:
        for kind in ("prediction", "reasoning"):
            raters = rater_scores(run, kind)
            for first, second in combinations(raters, 2):
                a, b = _pairs(raters[first], raters[second])
                if not a:
                    continue
                agree = estimate([float(x == y) for x, y in zip(a, b, strict=True)]).scaled(100.0)
                kappa = cohen_kappa(a, b)
                low, high = kappa_interval(a, b) or (None, None)
                cells = [run.label, f"{kind}_score", first, second, len(a), agree, Estimate(kappa, low, high)]
                rows.append([*cells, None, None])
            rows += _multi_rater_rows(run, kind)
    if not rows:
        return None
    notes = [
        f"Agreement %: {WILSON}; Cohen's kappa [95% CI]: {BOOTSTRAP} (pairs of ratings resampled together).",
        "Rule = the rule verdict (closed/choice matching, open exact match); compared with prediction_score.",
        "Items a judge failed to score are left out of its pairs; Human = mean rating >= 0.5.",
        "kappa '–': undefined because both raters gave one constant label.",
        "Rows of three or more raters together (Rater B '—'): clinicians = each rarl review rater on their "
        "own; all = the judges, each clinician and (prediction_score) Rule. n and Agreement % (every rater "
        "agrees) and Fleiss' kappa: the items every one of them rated; Krippendorff's alpha (nominal): "
        "every item two or more of them rated (its n), missing ratings allowed; both [95% CI]: "
        f"{BOOTSTRAP} (items resampled with all their ratings).",
    ]
    headers = [
        "Run",
        "Score",
        "Rater A",
        "Rater B",
        "n",
        "Agreement %",
        "Cohen's kappa",
        "Fleiss' kappa",
        "Krippendorff's alpha",
    ]
    return Table(
        "Agreement between judges, humans and rule metrics",
        headers,
        rows,
        notes,
        slug="agreement",
        digits={"Cohen's kappa": 2, "Fleiss' kappa": 2, "Krippendorff's alpha": 2},
    )


def clinician_scores(run: RunData, kind: str) -> dict[str, dict[str, int]]:
    """Each clinician's own binary scores (``rarl review`` raters, rating >= 0.5), as ``Human:<rater>``."""
    field_name = f"{kind}_score"
    return {
        f"Human:{rater}": {k: int(v[field_name] >= 0.5) for k, v in by_key.items() if field_name in v}
        for rater, by_key in (run.human_raters or {}).items()
    }


def _multi_rater_rows(run: RunData, kind: str) -> list[list[Any]]:
    """Agreement rows of three or more raters together: the clinicians alone, and all raters (judges,
    each clinician, Rule for prediction_score), each with Fleiss' kappa and Krippendorff's alpha."""
    from rarl.stats import (
        fleiss_kappa,
        fleiss_kappa_interval,
        krippendorff_alpha,
        krippendorff_alpha_interval,
    )

    clinicians = clinician_scores(run, kind)
    pairwise = rater_scores(run, kind)
    everyone = {name: scores for name, scores in pairwise.items() if name != HUMAN} | clinicians
    rows = []
    for label, raters in (("clinicians", clinicians), ("all", everyone)):
        raters = {name: scores for name, scores in raters.items() if scores}
        if len(raters) < 3 or (label == "all" and raters.keys() == clinicians.keys()):
            continue
        keys = sorted(set().union(*(scores.keys() for scores in raters.values())))
        table = [[scores.get(key) for scores in raters.values()] for key in keys]
        complete = [row for row in table if None not in row]
        pairable = [row for row in table if sum(r is not None for r in row) >= 2]
        fleiss = fleiss_kappa(complete) if complete else None
        f_low, f_high = (fleiss_kappa_interval(complete) if complete else None) or (None, None)
        alpha = krippendorff_alpha(pairable) if pairable else None
        a_low, a_high = (krippendorff_alpha_interval(pairable) if pairable else None) or (None, None)
        agree = estimate([float(len(set(row)) == 1) for row in complete]).scaled(100.0)
        names = f"{label} ({len(raters)}): " + ", ".join(raters)
        rows.append(
            [
                run.label,
                f"{kind}_score",
                names,
                "—",
                len(complete),
                agree,
                None,
                Estimate(fleiss, f_low, f_high, len(complete)),
                Estimate(alpha, a_low, a_high, len(pairable)),
            ]
        )
    return rows


def paired_table(runs: Sequence[RunData]) -> Table | None:
    """ "B vs A" for every later run against the first, per dataset and question type, on matched items.

    Items are matched by key (dataset/split/id); items only one run has are counted in the table, never
    silently dropped from view. Differences are in percentage points with a paired-bootstrap 95% CI;
    McNemar's exact p-value tests the 0/1 outcomes.
    """
    if len(runs) < 2 or not all(run.scores for run in runs):
        return None
    base = runs[0]
    base_metrics = outcome_metrics(base)
    rows: list[list[Any]] = []
    for other in runs[1:]:
        other_metrics = outcome_metrics(other)
        for name in [m for m in base_metrics if m in other_metrics]:
            # items a metric leaves out (a reasoning verdict without a reference reasoning) are skipped
            for cell in paired_cells(base.scores, other.scores, base_metrics[name]):
                cells: list[Any] = [f"{other.label} vs {base.label}", name, *cell.group, cell.matched]
                cells += [cell.only_a, cell.only_b]
                result = cell.result
                if result is None:
                    rows.append([*cells, None, None, None, None])
                    continue
                diff = Estimate(result.difference, *result.interval, result.n).scaled(100.0)
                cells += [100.0 * result.mean_a, 100.0 * result.mean_b, diff, result.mcnemar_p]
                rows.append(cells)
    headers = [
        "Comparison",
        "Metric",
        "Dataset",
        "Type",
        "n matched",
        "only in A",
        "only in B",
        "A %",
        "B %",
        "B − A (pp)",
        "McNemar p",
    ]
    notes = [
        "A = the first run, B = the later one; only items both runs answered (matched by dataset/split/id) "
        "enter A %, B % and the difference; 'only in A/B' counts the unmatched items.",
        f"B − A: mean per-item difference in percentage points, 95% paired {BOOTSTRAP}; McNemar: exact "
        "two-sided binomial test on the items exactly one run got right.",
        "Judge metrics count a failed judgement as 0, as in the judge table.",
    ]
    return Table(
        "Paired comparison on matched items",
        headers,
        rows,
        notes,
        slug="paired",
        digits={"McNemar p": 3, "A %": 1, "B %": 1},
    )


def image_control_table(runs: Sequence[RunData]) -> Table | None:
    """How much of each model's accuracy survives without its image (``rarl eval --image-control``).

    Each image-control run (blank or shuffled images) is paired with a normal run of the same model and
    prompt among the runs given, on the items both answered (matched by key), per dataset and overall:
    accuracy with and without the image, the paired difference (control − normal, percentage points, 95%
    paired bootstrap interval, n) and the share that survives (control % / normal %). Per-item outcomes
    are the score rows, compared by :func:`rarl.eval.aggregate.paired_cells` as in :func:`paired_table`.
    """
    normals = [run for run in runs if run.scores and not run.results.image_control]
    rows: list[list[Any]] = []
    for control in [run for run in runs if run.scores and run.results.image_control]:
        keys = {row.key for row in control.scores}
        partner = next(
            (
                run
                for run in normals
                if run.results.model == control.results.model
                and run.results.prompt == control.results.prompt
                and keys & {row.key for row in run.scores}
            ),
            None,
        )
        if partner is None:
            continue
        normal_metrics, control_metrics = outcome_metrics(partner), outcome_metrics(control)
        for name in [m for m in normal_metrics if m in control_metrics]:
            cells = paired_cells(partner.scores, control.scores, normal_metrics[name], by_type=False)
            for cell in cells:
                result = cell.result
                if result is None:
                    continue
                diff = Estimate(result.difference, *result.interval, result.n).scaled(100.0)
                kept = 100.0 * result.mean_b / result.mean_a if result.mean_a else None
                rows.append(
                    [
                        control.label,
                        partner.label,
                        control.results.image_control,
                        name,
                        cell.group[0],
                        result.n,
                        cell.estimate_a.scaled(100.0),
                        cell.estimate_b.scaled(100.0),
                        diff,
                        kept,
                    ]
                )
    if not rows:
        return None
    headers = [
        "Control run",
        "Normal run",
        "Image",
        "Metric",
        "Dataset",
        "n matched",
        "With image %",
        "Without image %",
        "Without − with (pp)",
        "Survives %",
    ]
    notes = [
        "Each control run is paired with a normal run of the same model and prompt, on the items both "
        "answered (matched by dataset/split/id). Image: blank = a uniform mid-grey image of the item's "
        "image size; shuffled = another item's image (a seeded derangement).",
        f"With/without image %: {WILSON}; without − with: mean per-item difference in percentage points, "
        f"95% paired {BOOTSTRAP}; Survives % = without / with (how much of the accuracy needs no image; "
        "compare with the benchmark's chance level, e.g. 50% on yes/no questions).",
    ]
    return Table(
        "Image dependence: accuracy without the image",
        headers,
        rows,
        notes,
        slug="image_control",
        digits={"Survives %": 0},
    )


def subgroup_table(runs: Sequence[RunData]) -> Table | None:
    """Rule accuracy (and judge Final %) per dataset × question type × modality × organ, with n and CI.

    Only the dimensions some item has are shown (modality and organ come from the source when it records
    them); every observed cell is listed, and cells with fewer than 20 items are marked, not hidden.
    """
    runs = [run for run in runs if run.scores]
    if not runs:
        return None
    every_row = [row for run in runs for row in run.scores]
    show_modality = any(row.modality for row in every_row)
    show_organ = any(row.organ for row in every_row)
    fields = (
        [*SUBGROUP_FIELDS[:2]] + (["modality"] if show_modality else []) + (["organ"] if show_organ else [])
    )
    cells: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for run in runs:
        for key, keys in subgroup_keys(run.scores, fields).items():
            cells.setdefault(key, {})[run.label] = keys
    prefix = len(runs) > 1
    metrics = {
        run.label: {
            name: metric
            for name, metric in outcome_metrics(run).items()
            if name == "rarl Acc." or name.endswith(" Final")
        }
        for run in runs
    }
    headers = (
        ["Dataset", "Type"] + (["Modality"] if show_modality else []) + (["Organ"] if show_organ else [])
    )
    for run in runs:
        headers += [f"{run.label} · {m} %" if prefix else f"{m} %" for m in metrics[run.label]]
    headers.append(f"n < {SMALL_N}")
    rows = []
    for key in sorted(cells):
        row: list[Any] = list(key)
        smallest = None
        for run in runs:
            keys = cells[key].get(run.label, set())
            for metric in metrics[run.label].values():
                found = group_estimate(run.scores, metric, keys)
                row.append(found.scaled(100.0) if found is not None else None)
            smallest = len(keys) if smallest is None else min(smallest, len(keys))
        row.append("⚠ small" if (smallest or 0) < SMALL_N else "")
        rows.append(row)
    notes = [
        INTERVAL_NOTE,
        f"Every observed cell is listed; cells with fewer than {SMALL_N} items are marked '⚠ small' (†): "
        "their intervals are wide, read them as anecdotes.",
    ]
    if show_organ:
        notes.append("Organ: the source's organ/location field (VQA-RAD image_organ, SLAKE location).")
    return Table(
        "Subgroups: dataset × question type × modality × organ", headers, rows, notes, slug="subgroups"
    )


# --------------------------------------------------------------------------------------------------
# documents


def run_description(results: RunResults) -> str:
    """ "model m, reasoning prompt, n=192" from what results.json has (absent fields are left out)."""
    parts = [f"model {results.model}" if results.model else "model not recorded"]
    if results.prompt:
        parts.append(f"{results.prompt} prompt")
    if results.image_control:
        parts.append(f"image control: {results.image_control} images")
    parts.append(f"n={results.n}" if results.n is not None else "n not recorded")
    return ", ".join(parts)


def results_markdown(results: RunResults | dict[str, Any], label: str | None = None) -> str:
    """Markdown for one run's ``results.json`` (what ``rarl eval`` writes as ``results.md``)."""
    if not isinstance(results, RunResults):
        results = RunResults.from_dict(results)
    run = RunData(label=label or "run", results=results)
    parts = [f"# Evaluation: {run_description(results)}", ""]
    if not results.rule_metrics and not results.judges:
        parts.append("No scores in this results.json (no rule metrics, no judges).\n")
    for table in (
        judge_table([run]),
        rule_table([run]) if results.rule_metrics else None,
        cvbench_table([run]),
    ):
        if table is not None:
            parts.append(table.markdown())
    return "\n".join(parts)


def write_results_markdown(run_dir: str | Path) -> Path:
    """Render a run directory's ``results.json`` as its ``results.md`` (called by ``rarl eval`` and
    ``rarl judge`` after the evaluation package has written ``results.json``)."""
    from rarl.schema.rundir import RESULTS_FILE, RESULTS_MD

    directory = Path(run_dir)
    return atomic_write_text(directory / RESULTS_MD, results_markdown(read_results(directory / RESULTS_FILE)))


def _plot_bars(runs: Sequence[RunData], datasets: list[str]) -> dict[str, list[Estimate | None]]:
    """Bars for ``dataset_scores.png``: each run's judges' Final % and rule Acc. %, with intervals and n."""
    bars: dict[str, list[Estimate | None]] = {}
    for run in runs:
        for judge in run.judges:
            summary = run.results.judges[judge].datasets
            name = f"{run.label} · {judge}" if len(runs) > 1 else judge
            bars[f"{name} Final %"] = [_judge_estimate(summary.get(d), "final") for d in datasets]
        rule = run.results.rule_metrics.datasets if run.results.rule_metrics else {}
        bars[f"{run.label} rule Acc. %" if len(runs) > 1 else "rule Acc. %"] = [
            _block_estimate(rule.get(d), "rarl.accuracy") for d in datasets
        ]
    return bars


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    train_runs: Sequence[str | Path] = (),
    human_db: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, one CSV per table and PNG plots to ``out_dir``; returns the written paths."""
    from rarl.report.plots import plot_dataset_scores, plot_reward_curves

    check_output_directory(out_dir, "--out")  # before reading the runs, not after
    if labels and len(labels) != len(run_dirs):
        raise UserError(f"--labels: {len(labels)} labels for {len(run_dirs)} runs")
    runs = [load_run(path, labels[i] if labels else None) for i, path in enumerate(run_dirs)]
    names = [run.label for run in runs]
    if len(set(names)) != len(names):
        runs = [dataclasses.replace(run, label=f"{i + 1}:{run.label}") for i, run in enumerate(runs)]
    if human_db:
        attach_human(runs, human_db)
    out = Path(out_dir)
    written: dict[str, Path] = {}
    candidates = (
        judge_table(runs),
        rule_table(runs),
        cvbench_table(runs),
        paired_table(runs),
        image_control_table(runs),
        subgroup_table(runs),
        agreement_table(runs),
    )
    tables = [t for t in candidates if t]
    for table in tables:
        written[f"{table.slug}.csv"] = atomic_write_text(out / f"{table.slug}.csv", table.csv())

    figures: list[str] = []
    datasets = _dataset_rows(runs)
    written["dataset_scores.png"] = plot_dataset_scores(
        datasets, _plot_bars(runs, datasets), out / "dataset_scores.png", "Per-dataset scores (95% CI, n)"
    )
    figures.append("dataset_scores.png")
    if train_runs:
        curves = {Path(p).name or str(p): p for p in train_runs}
        written["reward_curves.png"] = plot_reward_curves(curves, out / "reward_curves.png")
        figures.append("reward_curves.png")

    parts = ["# rarl evaluation report", ""]
    parts += [f"- **{run.label}**: {run_description(run.results)}" for run in runs]
    _, warning = coverage(runs)
    if warning:
        parts += ["", f"**{warning}**"]
    if len(runs) > 1 and not any(t.slug == "paired" for t in tables):
        parts += ["", "No paired comparison: it needs every run's predictions.jsonl (items matched by key)."]
    parts.append("")
    for table in tables:
        parts.append(table.markdown())
        parts.append(f"CSV: `{table.slug}.csv`\n")
    parts += [f"![{name}]({name})\n" for name in figures]
    written["report.md"] = atomic_write_text(out / "report.md", "\n".join(parts))
    return written


__all__ = [
    "RunData",
    "Table",
    "agreement_table",
    "attach_human",
    "build_report",
    "cohen_kappa",
    "coverage",
    "cvbench_table",
    "image_control_table",
    "item_outcomes",
    "judge_table",
    "load_run",
    "paired_table",
    "rater_scores",
    "results_markdown",
    "rule_table",
    "run_description",
    "subgroup_table",
    "write_results_markdown",
]
