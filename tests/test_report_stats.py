"""`rarl report` statistics: intervals, paired comparisons, subgroups, and reports that never mislead.

Independent oracles: scipy's Wilson interval and binomial test; counts worked out by hand.
"""

from __future__ import annotations

import csv
import json

import pytest

from rarl.eval.metrics import dataset_labels
from rarl.report.tables import build_report, results_markdown
from rarl.schema.judgements import Judgement, write_judgements
from rarl.schema.records import PredictionRecord
from tests.conftest import judge_summary_of, rule_metrics_of, write_results_dict

scipy_stats = pytest.importorskip("scipy.stats")


def record(i, dataset, pred, ref="yes", qtype="closed", modality=None, organ=None):
    return PredictionRecord(
        id=str(i),
        dataset=dataset,
        split="test",
        question=f"q{i}?",
        question_type=qtype,
        reference_answer=ref,
        model="m",
        prompt="reasoning",
        raw_output=f"<answer>{pred}</answer>",
        pred_reasoning="",
        pred_answer=pred,
        modality=modality,
        extra={"organ": organ} if organ else {},
    )


def write_run(directory, records, judge=None):
    """An eval directory as `rarl eval` leaves it; ``judge`` = per-record prediction_score (0/1/None)."""
    directory.mkdir(parents=True)
    (directory / "predictions.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    results = {
        "model": directory.name,
        "prompt": "reasoning",
        "n": len(records),
        "datasets": list(dict.fromkeys(dataset_labels(records))),
        "rule_metrics": rule_metrics_of(records, bertscore=False),
        "judges": {},
    }
    if judge is not None:
        judgements = [
            Judgement(
                key=r.key,
                judge="gpt",
                model="g",
                status="ok" if s is not None else "api_error",
                reasoning_score=s,
                prediction_score=s,
            )
            for r, s in zip(records, judge, strict=True)
        ]
        write_judgements(directory / "judgements" / "gpt.jsonl", judgements)
        results["judges"]["gpt"] = {
            "model": "g",
            "prompt_version": "v",
            "stats": {"n": len(records)},
            "summary": judge_summary_of(records, judgements, "gpt"),
        }
    write_results_dict(directory, results)
    return directory


def wilson(k, n):
    ci = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return pytest.approx([100 * ci.low, 100 * ci.high], abs=1e-3)


def by_first(path, key):
    return {row[key]: row for row in csv.DictReader(path.open())}


def test_rule_and_judge_cells_carry_wilson_intervals_and_n(tmp_path):
    records = [record(i, "vqa_rad", "yes" if i < 17 else "no") for i in range(24)]
    judge = [1 if i < 10 else (None if i == 23 else 0) for i in range(24)]
    run = write_run(tmp_path / "run", records, judge)
    written = build_report([run], tmp_path / "out")
    rule = by_first(written["rule_metrics.csv"], "Dataset")["vqa_rad"]
    assert float(rule["rarl Acc. %"]) == pytest.approx(100 * 17 / 24, abs=1e-3)
    assert [float(rule["rarl Acc. % CI low"]), float(rule["rarl Acc. % CI high"])] == wilson(17, 24)
    assert rule["rarl Acc. % n"] == "24"
    judges = by_first(written["judges.csv"], "Dataset")["vqa_rad"]
    # the failed judgement stays in the denominator as 0: 10 of 24
    assert [float(judges["gpt Final % CI low"]), float(judges["gpt Final % CI high"])] == wilson(10, 24)
    assert judges["gpt Final % n"] == "24"
    report = written["report.md"].read_text()
    assert "Wilson score interval" in report and "70.8 [" in report and "n=24" in report
    md = results_markdown(json.loads((run / "results.json").read_text()))
    assert "70.8 [" in md and "Wilson" in md  # results.md carries the same intervals


def test_paired_comparison_matches_items_counts_unmatched_and_mcnemar(tmp_path):
    # A and B share items 0-39 of vqa_rad; A also has 40-44, B has 45-47 (never silently dropped).
    a_right = {i: i % 4 != 0 for i in range(45)}  # wrong on 0,4,8,...
    b_right = {i: i % 4 != 0 or i < 24 for i in range(48)}  # B also fixes 0,4,...,20 (6 items)
    b_right.update({5: False, 9: False})  # and breaks two items A had right
    run_a = write_run(
        tmp_path / "A", [record(i, "vqa_rad", "yes" if a_right[i] else "no") for i in range(45)]
    )
    keep = [i for i in range(48) if not 40 <= i < 45]
    run_b = write_run(tmp_path / "B", [record(i, "vqa_rad", "yes" if b_right[i] else "no") for i in keep])
    written = build_report([run_a, run_b], tmp_path / "out", labels=["A", "B"])
    rows = [r for r in csv.DictReader(written["paired.csv"].open()) if r["Metric"] == "rarl Acc."]
    row = next(r for r in rows if r["Dataset"] == "vqa_rad" and r["Type"] == "all")
    assert row["Comparison"] == "B vs A"
    assert (row["n matched"], row["only in A"], row["only in B"]) == ("40", "5", "3")
    common = range(40)
    a_pct = 100 * sum(a_right[i] for i in common) / 40
    b_pct = 100 * sum(b_right[i] for i in common) / 40
    assert float(row["A %"]) == pytest.approx(a_pct) and float(row["B %"]) == pytest.approx(b_pct)
    diff = float(row["B − A (pp)"])
    assert diff == pytest.approx(b_pct - a_pct)
    low, high = float(row["B − A (pp) CI low"]), float(row["B − A (pp) CI high"])
    assert low < diff < high
    # McNemar: 6 items only B got right, 2 only A -> exact binomial test of 2 of 8 at 1/2
    assert float(row["McNemar p"]) == pytest.approx(scipy_stats.binomtest(2, 8).pvalue, abs=1e-4)
    assert "B vs A" in written["report.md"].read_text()


def test_subgroups_by_dataset_type_modality_organ_mark_small_cells(tmp_path):
    records = [record(i, "vqa_rad", "yes", modality="ct", organ="chest") for i in range(25)]
    records += [record(100 + i, "vqa_rad", "no", modality="mri", organ="brain") for i in range(5)]
    records += [record(200 + i, "slake", "yes", ref="lung", qtype="open") for i in range(3)]
    written = build_report([write_run(tmp_path / "run", records)], tmp_path / "out")
    rows = list(csv.DictReader(written["subgroups.csv"].open()))
    cells = {(r["Dataset"], r["Type"], r["Modality"], r["Organ"]): r for r in rows}
    assert set(cells) == {
        ("vqa_rad", "closed", "ct", "chest"),
        ("vqa_rad", "closed", "mri", "brain"),
        ("slake", "open", "–", "–"),
    }
    ct = cells[("vqa_rad", "closed", "ct", "chest")]
    assert (ct["rarl Acc. % n"], float(ct["rarl Acc. %"]), ct["n < 20"]) == ("25", 100.0, "")
    mri = cells[("vqa_rad", "closed", "mri", "brain")]
    assert (mri["rarl Acc. % n"], float(mri["rarl Acc. %"]), mri["n < 20"]) == ("5", 0.0, "⚠ small")
    assert [float(mri["rarl Acc. % CI low"]), float(mri["rarl Acc. % CI high"])] == wilson(0, 5)
    assert "n=5 †" in written["report.md"].read_text()  # marked in the markdown too, not hidden


def test_kappa_has_a_bootstrap_interval(tmp_path):
    records = [record(i, "vqa_rad", "yes" if i % 3 else "no") for i in range(60)]
    judge = [int(i % 3 != 0) if i % 7 else int(i % 3 == 0) for i in range(60)]
    written = build_report([write_run(tmp_path / "run", records, judge)], tmp_path / "out")
    row = next(r for r in csv.DictReader(written["agreement.csv"].open()) if r["Score"] == "prediction_score")
    kappa = float(row["Cohen's kappa"])
    assert float(row["Cohen's kappa CI low"]) < kappa < float(row["Cohen's kappa CI high"])


# --- issue 15 part E: reports never mislead -------------------------------------------------------


def test_runs_on_different_items_warn_in_the_tables_themselves(tmp_path):
    run_a = write_run(tmp_path / "A", [record(i, "vqa_rad", "yes") for i in range(10)])
    run_b = write_run(tmp_path / "B", [record(i, "vqa_rad", "yes") for i in range(3, 12)])
    written = build_report([run_a, run_b], tmp_path / "out", labels=["A", "B"])
    rule_md = written["report.md"].read_text().split("### Rule metrics per dataset")[1].split("###")[0]
    assert "do NOT cover the same items" in rule_md
    rows = by_first(written["rule_metrics.csv"], "Dataset")
    assert rows["vqa_rad"]["Items"] == "⚠ differ: A 10 / B 9, 7 in all"
    # same items: no warning, no extra column
    same = build_report([run_a, run_a], tmp_path / "out2", labels=["A", "A2"])
    assert "do NOT cover" not in same["report.md"].read_text()
    assert "Items" not in next(csv.reader(same["rule_metrics.csv"].open()))


def test_results_json_with_only_a_model_gives_a_sensible_report(tmp_path):
    run = tmp_path / "bare"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"model": "x"}))
    markdown = results_markdown({"model": "x"})
    assert "None" not in markdown and "model x" in markdown and "n not recorded" in markdown
    written = build_report([run], tmp_path / "out")
    report = written["report.md"].read_text()
    assert "None" not in report and "model x" in report


def test_dataset_scores_plot_draws_missing_as_missing_with_n_and_error_bars(tmp_path, monkeypatch):
    from rarl.report import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, out: figures.append(fig) or out)
    run_a = write_run(tmp_path / "A", [record(i, "vqa_rad", "yes") for i in range(8)])
    run_b = write_run(
        tmp_path / "B",
        [record(i, "vqa_rad", "no") for i in range(6)] + [record(50 + i, "slake", "yes") for i in range(4)],
    )
    build_report([run_a, run_b], tmp_path / "out", labels=["A", "B"])
    (axes,) = figures[0].axes
    heights = [patch.get_height() for patch in axes.patches]
    # A has no slake items: three bars (A vqa_rad 100, B vqa_rad 0, B slake 100), not a fourth of height 0
    assert sorted(heights) == [0.0, 100.0, 100.0]
    texts = [t.get_text() for t in axes.texts]
    assert sorted(t for t in texts if t.startswith("n=")) == ["n=4", "n=6", "n=8"]
    assert texts.count("n/a") == 1
    assert axes.collections, "error bars (95% CI) are drawn"
