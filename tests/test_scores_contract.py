"""Per-item score rows (scores.jsonl) as the one contract between scoring and the report (issue 21 item 2)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
from test_eval_harness import write_config

from rarl.config import load_config
from rarl.eval.aggregate import judge_summary
from rarl.eval.harness import run_evaluation
from rarl.eval.metrics import judge_score_rows
from rarl.report.tables import build_report, item_outcomes, load_run, rater_scores, subgroup_table
from rarl.schema.judgements import Judgement
from rarl.schema.records import PredictionRecord
from rarl.schema.scores import SCORES_FILE, read_scores


def test_eval_writes_one_row_per_item_and_metric_with_its_groups(tmp_path, tiny_model_dir):
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False))
    results = run_evaluation(config, progress=False).to_dict()
    out = tmp_path / "eval"
    rows = read_scores(out / SCORES_FILE)
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    keys = [f"{p['dataset']}/{p['split']}/{p['id']}" for p in predictions]
    # every item has its rarl.accuracy row, once, with its grouping fields from the prediction
    accuracy = [row for row in rows if row.metric == "rarl.accuracy"]
    assert sorted(row.key for row in accuracy) == sorted(keys)
    by_key = {row.key: row for row in accuracy}
    for prediction, key in zip(predictions, keys, strict=True):
        row = by_key[key]
        assert (row.dataset, row.split, row.question_type, row.benchmark) == (
            prediction["dataset"], prediction["split"], prediction["question_type"], "synthetic"
        )  # fmt: skip
    # the aggregate in results.json is the mean of those rows (one source of truth)
    mean = sum(row.value for row in accuracy) / len(accuracy)
    assert results["rule_metrics"]["overall"]["rarl.accuracy"] == mean
    assert {row.metric.split(".")[0] for row in rows} <= {"rarl", "official", "llava_med"}


def test_the_report_reads_item_outcomes_from_the_rows_not_from_the_predictions(tmp_path, tiny_model_dir):
    """Nothing downstream re-decides an outcome: change a row and the report's per-item tables follow."""
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False))
    run_evaluation(config, progress=False)
    path = tmp_path / "eval" / SCORES_FILE
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for line in lines:
        if line["metric"] == "rarl.accuracy":
            line["value"] = 1.0  # the tiny model answers nonsense; its rows now say "right"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = load_run(tmp_path / "eval")
    assert set(item_outcomes(run)["rarl Acc."].values()) == {1.0}
    assert set(rater_scores(run, "prediction")["Rule"].values()) == {1}
    table = subgroup_table([run])
    estimates = [cell for row in table.rows for cell in row if hasattr(cell, "value")]
    assert estimates and all(cell.value == 100.0 for cell in estimates)


def test_judge_rows_count_failures_as_zero_and_leave_a_missing_reasoning_score_out():
    records = [
        PredictionRecord(str(i), "ds", "test", "q?", "closed", "yes", "m", "reasoning", "x", "", "yes")
        for i in range(3)
    ]
    judgements = [
        Judgement("ds/test/0", "j", "gpt", "ok", reasoning_score=1, prediction_score=1),
        Judgement("ds/test/1", "j", "gpt", "ok", reasoning_score=None, prediction_score=0),  # n/a
        Judgement("ds/test/2", "j", "gpt", "api_error"),
    ]
    rows = {(row.key, row.metric): row.value for row in judge_score_rows(records, "j", judgements)}
    assert rows[("ds/test/0", "judge.j.final")] == 1.0 and rows[("ds/test/0", "judge.j.reasoning")] == 1.0
    assert rows[("ds/test/1", "judge.j.final")] == 0.0 and rows[("ds/test/1", "judge.j.reasoning")] is None
    assert rows[("ds/test/2", "judge.j.final")] == 0.0 and rows[("ds/test/2", "judge.j.reasoning")] == 0.0


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, written out from its textbook formula (the test's own oracle)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_every_rule_number_and_the_report_come_from_the_rows(tmp_path, tiny_model_dir):
    """results.json, results.md and `rarl report` are aggregations of scores.jsonl: change the rows and
    every number follows (the report re-aggregates; it never trusts or rebuilds a percentage)."""
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False))
    run_evaluation(config, progress=False)
    out = tmp_path / "eval"
    lines = [json.loads(line) for line in (out / SCORES_FILE).read_text().splitlines()]
    accuracy = [line for line in lines if line["metric"] == "rarl.accuracy"]
    for index, line in enumerate(accuracy):
        line["value"] = 1.0 if index < 4 else 0.0  # 4 of 6 right, whatever the model said
    (out / SCORES_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    written = build_report([out], tmp_path / "rep")
    table = {row["Dataset"]: row for row in csv.DictReader(written["rule_metrics.csv"].open())}
    all_row = table["All"]
    assert float(all_row["rarl Acc. %"]) == pytest.approx(100 * 4 / 6, abs=1e-3)
    assert int(all_row["rarl Acc. % n"]) == 6
    low, high = _wilson(4, 6)
    assert float(all_row["rarl Acc. % CI low"]) == pytest.approx(100 * low, abs=1e-3)
    assert float(all_row["rarl Acc. % CI high"]) == pytest.approx(100 * high, abs=1e-3)


def test_judge_blocks_have_wilson_intervals_from_their_counts(tmp_path):
    records = [
        PredictionRecord(str(i), "ds", "test", "q?", "closed", "yes", "m", "reasoning", "x", "", "yes")
        for i in range(5)
    ]
    verdicts = [(1, 1), (1, 0), (0, 1), (None, 1), None]  # the last one failed: a 0 in the denominator
    judgements = [
        Judgement(r.key, "j", "gpt", "ok", reasoning_score=v[0], prediction_score=v[1])
        if v is not None
        else Judgement(r.key, "j", "gpt", "api_error")
        for r, v in zip(records, verdicts, strict=True)
    ]
    judgements[3] = dataclasses.replace(judgements[3], reasoning_applicable=False)
    overall, per_label = judge_summary(judge_score_rows(records, "j", judgements), "j")
    assert (overall.n, overall.judged, overall.failed) == (5, 4, 1)
    assert overall.final == pytest.approx(100 * 3 / 5)
    assert overall.final_ci == pytest.approx(tuple(100 * x for x in _wilson(3, 5)))
    assert overall.reasoning_n == 4 and overall.reasoning == pytest.approx(100 * 2 / 4)  # n/a item left out
    assert overall.reasoning_ci == pytest.approx(tuple(100 * x for x in _wilson(2, 4)))
    assert per_label["ds"] == overall


def test_runs_with_one_name_keep_their_rows_in_the_report(tmp_path, tiny_model_dir):
    """Two runs whose directories share a name are relabelled "1:eval", "2:eval": their per-item rows
    came along, so the paired table compares them (it used to compare nothing: the rows were dropped)."""
    for name in ("a", "b"):
        run_evaluation(
            load_config(write_config(tmp_path / name, tiny_model_dir, bertscore=False)), progress=False
        )
    written = build_report([tmp_path / "a" / "eval", tmp_path / "b" / "eval"], tmp_path / "rep")
    rows = list(csv.DictReader(written["paired.csv"].open()))
    overall = next(row for row in rows if row["Dataset"] == "All" and row["Metric"] == "rarl Acc.")
    assert overall["Comparison"] == "2:eval vs 1:eval" and int(overall["n matched"]) == 6
    assert float(overall["B − A (pp)"]) == 0.0  # the same model on the same items
