"""Per-item score rows (scores.jsonl) as the one contract between scoring and the report (issue 21 item 2)."""

from __future__ import annotations

import json

from test_eval_harness import write_config

from rarl.config import load_config
from rarl.eval.harness import run_evaluation
from rarl.eval.metrics import judge_score_rows
from rarl.report.tables import item_outcomes, load_run, rater_scores, subgroup_table
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
