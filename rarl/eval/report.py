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
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from rarl.errors import UserError
from rarl.eval.records import PredictionRecord
from rarl.io import atomic_write_text

log = logging.getLogger(__name__)

HUMAN = "Human"


@dataclass
class Table:
    """A rendered-agnostic table: a title, column headers, rows of cells, and footnotes."""

    title: str
    headers: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    slug: str = "table"

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |"]
        numeric = [
            all(isinstance(row[i], (int, float)) for row in self.rows if row[i] is not None)
            and any(row[i] is not None for row in self.rows)
            for i in range(len(self.headers))
        ]
        lines.append("|" + "|".join("---:" if right else "---" for right in numeric) + "|")
        lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.headers)
        for row in self.rows:
            writer.writerow(["" if v is None else (round(v, 4) if isinstance(v, float) else v) for v in row])
        return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


# --------------------------------------------------------------------------------------------------
# runs


@dataclass
class RunData:
    """One evaluation run as the report sees it."""

    label: str
    results: dict[str, Any]
    records: list[PredictionRecord] = field(default_factory=list)
    judgements: dict[str, dict[str, Any]] = field(default_factory=dict)  # judge -> key -> Judgement
    human: dict[str, dict[str, float]] | None = None  # key -> mean human scores

    @property
    def judges(self) -> list[str]:
        return list(self.results.get("judges") or {})

    @property
    def datasets(self) -> list[str]:
        return list(self.results.get("datasets") or self.results.get("rule_metrics", {}).get("datasets", {}))


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read an eval output directory (``results.json``, ``predictions.jsonl``, ``judgements/*.jsonl``)."""
    from rarl.eval.harness import JUDGEMENTS_DIR, PREDICTIONS_FILE, RESULTS_FILE, read_predictions
    from rarl.eval.judge import read_judgements

    source = Path(path)
    run_dir = source.parent if source.is_file() else source
    results_path = source if source.is_file() else source / RESULTS_FILE
    if not results_path.is_file():
        raise UserError(f"{run_dir}: no {RESULTS_FILE} here (run `rarl eval` first)")
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{results_path}: invalid JSON ({exc.msg})") from None
    records = read_predictions(run_dir / PREDICTIONS_FILE) if (run_dir / PREDICTIONS_FILE).exists() else []
    judgements = {}
    for name in results.get("judges") or {}:
        file = run_dir / JUDGEMENTS_DIR / f"{name}.jsonl"
        if file.exists():
            judgements[name] = {j.key: j for j in read_judgements(file)}
    return RunData(label=label or run_dir.name, results=results, records=records, judgements=judgements)


def attach_human(runs: Sequence[RunData], db_path: str | Path) -> None:
    """Merge mean human ratings from a ``rarl review`` database into the runs whose model they rate."""
    try:
        from rarl.review.store import human_scores_by_model
    except ImportError as exc:  # the review module is optional for reports
        raise UserError(f"--human needs rarl.review.store ({exc})") from None
    if not Path(db_path).is_file():
        raise UserError(f"{db_path}: ratings database not found")
    by_model = human_scores_by_model(db_path)
    for run in runs:
        scores = by_model.get(run.results.get("model", ""))
        if scores is None and len(by_model) == 1 and len(runs) == 1:
            scores = next(iter(by_model.values()))
            log.warning("%s: ratings are for another model name; using them for the only run", db_path)
        run.human = scores or None


# --------------------------------------------------------------------------------------------------
# statistics


def cohen_kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two binary raters on the same items; ``None`` when chance agreement is 1.

    (po - pe) / (1 - pe): agreement beyond what the raters' base rates alone would give. When both raters
    give one constant label, kappa is undefined (pe = 1) and reported as such instead of as 0 or 1.
    """
    if len(a) != len(b):
        raise ValueError("raters must score the same items")
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    if pe >= 1.0:
        return None
    return (po - pe) / (1 - pe)


def _pairs(first: dict[str, int], second: dict[str, int]) -> tuple[list[int], list[int]]:
    keys = [key for key in first if key in second]
    return [first[k] for k in keys], [second[k] for k in keys]


def rater_scores(run: RunData, kind: str) -> dict[str, dict[str, int]]:
    """Binary per-item scores of every rater in a run: judges (ok items only), Human, and Rule."""
    from rarl.eval.metrics import rule_correct

    field_name = f"{kind}_score"
    raters: dict[str, dict[str, int]] = {}
    for judge, by_key in run.judgements.items():
        raters[judge] = {k: int(getattr(j, field_name)) for k, j in by_key.items() if j.status == "ok"}
    if run.human:
        raters[HUMAN] = {k: int(v[field_name] >= 0.5) for k, v in run.human.items() if field_name in v}
    if kind == "prediction" and run.records:
        raters["Rule"] = {r.key: int(rule_correct(r)) for r in run.records}
    return raters


# --------------------------------------------------------------------------------------------------
# tables


def _dataset_rows(runs: Sequence[RunData]) -> list[str]:
    rows: list[str] = []
    for run in runs:
        rows += [name for name in run.datasets if name not in rows]
    return rows


def _human_block(run: RunData, keys: set[str] | None) -> tuple[int, float | None, float | None]:
    """(n rated, Reasoning %, Final %) of the human ratings over rated items within ``keys``."""
    assert run.human is not None
    items = [v for k, v in run.human.items() if keys is None or k in keys]
    if not items:
        return 0, None, None
    reasoning = 100.0 * sum(v["reasoning_score"] for v in items) / len(items)
    final = 100.0 * sum(v["prediction_score"] for v in items) / len(items)
    return len(items), reasoning, final


def judge_table(runs: Sequence[RunData]) -> Table | None:
    """Datasets as rows; per run and judge (and Human) a Reasoning % and a Final % column."""
    if not any(run.judges or run.human for run in runs):
        return None
    from rarl.eval.metrics import dataset_labels

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
                summary = run.results["judges"][judge]["summary"]
                block = summary["overall"] if dataset == "All" else summary["datasets"].get(dataset)
                row += [block["reasoning"], block["final"]] if block else [None, None]
            if run.human:
                keys = None
                if dataset != "All" and run.records:
                    labels = dataset_labels(run.records)
                    keys = {r.key for r, label in zip(run.records, labels, strict=True) if label == dataset}
                _, reasoning, final = _human_block(run, keys)
                row += [reasoning, final]
        rows.append(row)
    notes = [
        "Every sample is in the denominator: an item the judge could not score (parse or API failure) "
        "counts as 0."
    ]
    for run in runs:
        for judge in run.judges:
            info = run.results["judges"][judge]
            stats = info.get("stats", {})
            notes.append(
                f"{run.label} · {judge} = {info.get('model')} (prompt {info.get('prompt_version')}): "
                f"{stats.get('ok', 0)}/{stats.get('n', 0)} judged, {stats.get('parse_errors', 0)} parse "
                f"failures, {stats.get('api_errors', 0)} API failures"
            )
        if run.human:
            n, _, _ = _human_block(run, None)
            notes.append(f"{run.label} · Human: mean of raters over the {n} rated items only (not all items)")
    title = "LLM-judge Reasoning % / Final % per dataset (shape of the paper's Tables 2, 3 and 6)"
    return Table(title, headers, rows, notes, slug="judges")


RULE_COLUMNS = [
    ("Acc. %", lambda m: m.get("accuracy")),
    ("Closed %", lambda m: m.get("closed", {}).get("accuracy")),
    ("Choice %", lambda m: m.get("choice", {}).get("accuracy")),
    ("Open EM %", lambda m: m.get("open", {}).get("exact")),
    ("Open recall %", lambda m: m.get("open", {}).get("token_recall")),
    ("Open F1 %", lambda m: m.get("open", {}).get("token_f1")),
    ("BERTScore %", lambda m: m.get("open", {}).get("bertscore")),
    ("CV-Bench %", lambda m: m.get("cvbench", {}).get("combined")),
]


def rule_table(runs: Sequence[RunData]) -> Table:
    """Datasets as rows; per run the rule metrics (columns empty for every row are left out)."""
    datasets = _dataset_rows(runs)
    prefix = len(runs) > 1
    columns: list[tuple[str, RunData, Any]] = []
    for run in runs:
        metrics = run.results.get("rule_metrics", {})
        blocks = [metrics.get("datasets", {}).get(d, {}) for d in datasets] + [metrics.get("overall", {})]
        for name, getter in RULE_COLUMNS:
            if any(getter(block) is not None for block in blocks):
                columns.append((f"{run.label} · {name}" if prefix else name, run, getter))
    rows = []
    for dataset in [*datasets, "All"]:
        row: list[Any] = [dataset]
        for _, run, getter in columns:
            metrics = run.results.get("rule_metrics", {})
            block = (
                metrics.get("overall", {}) if dataset == "All" else metrics.get("datasets", {}).get(dataset)
            )
            row.append(_pct(getter(block)) if block else None)
        rows.append(row)
    notes = [
        "Acc. %: closed/choice matching and open exact match over all items; BERTScore only on open "
        "questions."
    ]
    for run in runs:
        model = run.results.get("rule_metrics", {}).get("bertscore_model")
        notes.append(
            f"{run.label}: model {run.results.get('model')}, prompt {run.results.get('prompt')}, "
            f"n={run.results.get('n')}" + (f", BERTScore model {model}" if model else "")
        )
    return Table(
        "Rule metrics per dataset", ["Dataset"] + [c[0] for c in columns], rows, notes, slug="rule_metrics"
    )


def cvbench_table(runs: Sequence[RunData]) -> Table | None:
    """CV-Bench per task, 2D, 3D and the official combined score; one column per run and dataset row."""
    columns: list[tuple[str, dict[str, Any]]] = []
    for run in runs:
        for dataset, block in run.results.get("rule_metrics", {}).get("datasets", {}).items():
            if "cvbench" in block:
                label = f"{run.label} · {dataset}" if len(runs) > 1 else dataset
                columns.append((label + " %", block["cvbench"]))
    if not columns:
        return None
    tasks: list[str] = []
    for _, cv in columns:
        tasks += [t for t in cv["tasks"] if t not in tasks]
    rows: list[list[Any]] = [
        [task] + [_pct(cv["tasks"].get(task, {}).get("accuracy")) for _, cv in columns] for task in tasks
    ]
    rows.append(["2D"] + [_pct(cv.get("accuracy_2d")) for _, cv in columns])
    rows.append(["3D"] + [_pct(cv.get("accuracy_3d")) for _, cv in columns])
    rows.append(["Combined"] + [_pct(cv.get("combined")) for _, cv in columns])
    notes = [f"{label}: {cv.get('combined_rule')}" for label, cv in columns]
    return Table("CV-Bench", ["Task"] + [c[0] for c in columns], rows, notes, slug="cvbench")


def agreement_table(runs: Sequence[RunData]) -> Table | None:
    """Cohen's kappa and raw agreement between every pair of raters (judges, Human, Rule) per score."""
    rows = []
    for run in runs:
        for kind in ("prediction", "reasoning"):
            raters = rater_scores(run, kind)
            for first, second in combinations(raters, 2):
                a, b = _pairs(raters[first], raters[second])
                if not a:
                    continue
                agree = 100.0 * sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
                rows.append([run.label, f"{kind}_score", first, second, len(a), agree, cohen_kappa(a, b)])
    if not rows:
        return None
    notes = [
        "Rule = the rule verdict (closed/choice matching, open exact match); compared with prediction_score.",
        "Items a judge failed to score are left out of its pairs; Human = mean rating >= 0.5.",
        "kappa '–': undefined because both raters gave one constant label.",
    ]
    headers = ["Run", "Score", "Rater A", "Rater B", "n", "Agreement %", "Cohen's kappa"]
    return Table("Agreement between judges, humans and rule metrics", headers, rows, notes, slug="agreement")


# --------------------------------------------------------------------------------------------------
# documents


def results_markdown(results: dict[str, Any], label: str | None = None) -> str:
    """Markdown for one run's ``results.json`` (what ``rarl eval`` writes as ``results.md``)."""
    run = RunData(label=label or "run", results=results)
    parts = [
        f"# Evaluation: {results.get('model')} ({results.get('prompt')} prompt, n={results.get('n')})",
        "",
    ]
    for table in (judge_table([run]), rule_table([run]), cvbench_table([run])):
        if table is not None:
            parts.append(table.markdown())
    return "\n".join(parts)


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    labels: Sequence[str] | None = None,
    train_runs: Sequence[str | Path] = (),
    human_db: str | Path | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, one CSV per table and PNG plots to ``out_dir``; returns the written paths."""
    from rarl.eval.plots import plot_dataset_scores, plot_reward_curves

    if labels and len(labels) != len(run_dirs):
        raise UserError(f"--labels: {len(labels)} labels for {len(run_dirs)} runs")
    runs = [load_run(path, labels[i] if labels else None) for i, path in enumerate(run_dirs)]
    names = [run.label for run in runs]
    if len(set(names)) != len(names):
        runs = [
            RunData(f"{i + 1}:{run.label}", run.results, run.records, run.judgements)
            for i, run in enumerate(runs)
        ]
    if human_db:
        attach_human(runs, human_db)
    out = Path(out_dir)
    written: dict[str, Path] = {}
    tables = [
        t for t in (judge_table(runs), rule_table(runs), cvbench_table(runs), agreement_table(runs)) if t
    ]
    for table in tables:
        written[f"{table.slug}.csv"] = atomic_write_text(out / f"{table.slug}.csv", table.csv())

    figures: list[str] = []
    datasets = _dataset_rows(runs)
    bars: dict[str, list[float | None]] = {}
    for run in runs:
        for judge in run.judges:
            summary = run.results["judges"][judge]["summary"]["datasets"]
            name = f"{run.label} · {judge}" if len(runs) > 1 else judge
            bars[f"{name} Final %"] = [summary.get(d, {}).get("final") for d in datasets]
        rule = run.results.get("rule_metrics", {}).get("datasets", {})
        bars[f"{run.label} rule Acc. %" if len(runs) > 1 else "rule Acc. %"] = [
            _pct(rule.get(d, {}).get("accuracy")) for d in datasets
        ]
    written["dataset_scores.png"] = plot_dataset_scores(
        datasets, bars, out / "dataset_scores.png", "Per-dataset scores"
    )
    figures.append("dataset_scores.png")
    if train_runs:
        curves = {Path(p).name or str(p): p for p in train_runs}
        written["reward_curves.png"] = plot_reward_curves(curves, out / "reward_curves.png")
        figures.append("reward_curves.png")

    parts = ["# rarl evaluation report", ""]
    parts += [
        f"- **{run.label}**: {run.results.get('model')} — {run.results.get('prompt')} prompt, "
        f"n={run.results.get('n')}"
        for run in runs
    ]
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
    "cvbench_table",
    "judge_table",
    "load_run",
    "rater_scores",
    "results_markdown",
    "rule_table",
]
