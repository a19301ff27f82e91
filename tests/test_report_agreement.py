"""`rarl report`'s agreement table with three clinicians and two judges: Fleiss' kappa and Krippendorff's
alpha rows, checked against statsmodels and the krippendorff package on the same ratings."""

from __future__ import annotations

import csv

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss
from test_report_tables import make_run

from rarl.report.tables import build_report

PREDS = [("vqa_rad", "yes" if i % 3 else "no", "yes" if i % 2 else "no") for i in range(12)]
# prediction_score of each clinician per item (None: not rated); reasoning_score = 1 - it, for variety
CLINICIANS = {
    "ann": [1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0],
    "bob": [1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1, 0],
    "cat": [1, 1, 1, 1, 0, 1, 0, 0, 1, 0, None, None],
}
GPT = [(1, 1), (0, 0), (1, 1), (1, 1), (0, 0), (1, 1), (0, 1), (1, 1), (1, 0), (0, 0), (1, 1), (0, 0)]


def test_agreement_rows_for_three_clinicians_and_all_raters(tmp_path):
    from rarl.review.store import RatingStore

    run, records = make_run(tmp_path, "rarl", "rarl-model", PREDS, {"gpt": GPT})
    store = RatingStore(tmp_path / "ratings.sqlite")
    store.register_items(records)
    for rater, scores in CLINICIANS.items():
        for record, score in zip(records, scores, strict=True):
            if score is not None:
                store.save(rater, record, 1 - score, score)
    written = build_report([run], tmp_path / "out", human_db=tmp_path / "ratings.sqlite")
    rows = list(csv.DictReader(written["agreement.csv"].open()))
    clinicians = next(
        r for r in rows if r["Score"] == "prediction_score" and r["Rater A"].startswith("clinicians (3)")
    )
    table = np.array([[np.nan if v is None else v for v in column] for column in CLINICIANS.values()]).T
    complete = table[~np.isnan(table).any(axis=1)].astype(int)
    fleiss = statsmodels_fleiss(aggregate_raters(complete, n_cat=2)[0])
    alpha = krippendorff.alpha(reliability_data=table.T, level_of_measurement="nominal")
    assert clinicians["n"] == "10" and clinicians["Fleiss' kappa n"] == "10"
    assert float(clinicians["Fleiss' kappa"]) == pytest.approx(fleiss, abs=1e-4)
    assert float(clinicians["Krippendorff's alpha"]) == pytest.approx(alpha, abs=1e-4)
    assert clinicians["Krippendorff's alpha n"] == "12"
    low, high = float(clinicians["Fleiss' kappa CI low"]), float(clinicians["Fleiss' kappa CI high"])
    assert low < fleiss < high
    unanimous = sum(len(set(row)) == 1 for row in complete) / len(complete)
    assert float(clinicians["Agreement %"]) == pytest.approx(100 * unanimous, abs=1e-3)

    # all raters: gpt, the three clinicians and Rule (the rule verdict of each item)
    everyone = next(r for r in rows if r["Rater A"].startswith("all (5)"))  # prediction_score only
    assert everyone["Rater A"] == "all (5): gpt, Rule, Human:ann, Human:bob, Human:cat"
    rule = [int(ref == pred) for _, ref, pred in PREDS]
    columns = [[g[1] for g in GPT], rule, *CLINICIANS.values()]
    table = np.array([[np.nan if v is None else v for v in column] for column in columns]).T
    complete = table[~np.isnan(table).any(axis=1)].astype(int)
    assert float(everyone["Fleiss' kappa"]) == pytest.approx(
        statsmodels_fleiss(aggregate_raters(complete, n_cat=2)[0]), abs=1e-4
    )
    assert float(everyone["Krippendorff's alpha"]) == pytest.approx(
        krippendorff.alpha(reliability_data=table.T, level_of_measurement="nominal"), abs=1e-4
    )
    # reasoning_score: gpt and the clinicians (no Rule rater of reasoning)
    reasoning = next(r for r in rows if r["Rater A"].startswith("all (4)"))
    assert reasoning["Score"] == "reasoning_score" and reasoning["Rater B"] == "—"
    # the pairwise rows are still there, one per pair, without the multi-rater columns
    pair = next(r for r in rows if {r["Rater A"], r["Rater B"]} == {"gpt", "Human"})
    assert pair["Cohen's kappa"] != "" and pair["Fleiss' kappa"] == ""
