"""`rarl report`: paper-shaped tables, kappa, human columns, CSV and PNG plots from fabricated runs."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
from PIL import Image

from rarl.cli import main
from rarl.eval.metrics import dataset_labels
from rarl.report.tables import build_report, cohen_kappa
from rarl.schema.judgements import Judgement, read_judgements, write_judgements
from rarl.schema.records import PredictionRecord
from tests.conftest import judge_summary_of, rule_metrics_of, write_results_dict


def test_cohen_kappa_known_values():
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) is None  # undefined: chance agreement is 1
    assert cohen_kappa([], []) is None


def make_run(tmp_path, name, model, preds, judge_scores, prompt="reasoning"):
    """An eval directory as `rarl eval` leaves it, from (dataset, reference, prediction) triples."""
    records = [
        PredictionRecord(
            id=str(i),
            dataset=ds,
            split="test",
            question=f"q{i}?",
            question_type="closed",
            reference_answer=ref,
            model=model,
            prompt=prompt,
            raw_output=f"<think>t</think><answer>{p}</answer>",
            pred_reasoning="t",
            pred_answer=p,
        )
        for i, (ds, ref, p) in enumerate(preds)
    ]
    out = tmp_path / name
    out.mkdir()
    (out / "predictions.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    judges = {}
    for judge, scores in judge_scores.items():
        judgements = [
            Judgement(
                key=r.key,
                judge=judge,
                model=f"{judge}-model",
                status="ok" if s else "api_error",
                reasoning_score=s[0] if s else None,
                prediction_score=s[1] if s else None,
            )
            for r, s in zip(records, scores, strict=True)
        ]
        write_judgements(out / "judgements" / f"{judge}.jsonl", judgements)
        judges[judge] = {
            "model": f"{judge}-model",
            "prompt_version": "v",
            "stats": {"n": len(records)},
            "summary": judge_summary_of(records, judgements, judge),
        }
    results = {
        "model": model,
        "prompt": prompt,
        "n": len(records),
        "datasets": list(dict.fromkeys(dataset_labels(records))),
        "rule_metrics": rule_metrics_of(records, bertscore=False),
        "judges": judges,
    }
    write_results_dict(out, results)
    return out, records


PREDS = [("vqa_rad", "yes", "yes"), ("vqa_rad", "no", "yes"), ("slake", "yes", "yes"), ("slake", "no", "no")]


def test_report_tables_numbers_csv_and_plots(tmp_path):
    base, _ = make_run(
        tmp_path,
        "base",
        "base-model",
        PREDS,
        {"gpt": [(1, 1), (0, 1), (1, 1), (0, 0)], "gemini": [(1, 1), (1, 0), None, (0, 1)]},
    )
    rarl, _ = make_run(tmp_path, "rarl", "rarl-model", PREDS, {"gpt": [(1, 1), (1, 0), (1, 1), (1, 1)]})
    train = tmp_path / "train"
    train.mkdir()
    (train / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "reward": 0.1 * s, "rewards/accuracy_reward/mean": 0.05 * s}) + "\n"
            for s in range(1, 6)
        )
        + '{"step": 6, "rew'
    )  # a torn last line is tolerated

    written = build_report([base, rarl], tmp_path / "report", labels=["Base", "RARL"], train_runs=[train])
    report = written["report.md"].read_text()
    rows = list(csv.reader(written["judges.csv"].open()))
    value_columns = [i for i, name in enumerate(rows[0]) if name.endswith("%")]
    assert [rows[0][i] for i in value_columns] == [
        "Base · gpt Reasoning %",
        "Base · gpt Final %",
        "Base · gemini Reasoning %",
        "Base · gemini Final %",
        "RARL · gpt Reasoning %",
        "RARL · gpt Final %",
    ]
    assert rows[0][value_columns[0] + 1 : value_columns[0] + 4] == [
        "Base · gpt Reasoning % CI low",
        "Base · gpt Reasoning % CI high",
        "Base · gpt Reasoning % n",
    ]
    table = {row[0]: [float(row[i]) if row[i] else None for i in value_columns] for row in rows[1:]}
    assert table["vqa_rad"] == [50.0, 100.0, 100.0, 50.0, 100.0, 50.0]
    # gemini failed on one slake item: it stays in the denominator as 0
    assert table["slake"] == [50.0, 50.0, 0.0, 50.0, 100.0, 100.0]
    assert table["All"] == [50.0, 75.0, 50.0, 50.0, 100.0, 75.0]

    rule = {row[0]: row for row in csv.reader(written["rule_metrics.csv"].open())}
    assert rule["vqa_rad"][1] == "50.0" and rule["slake"][1] == "100.0"

    agreement = list(csv.DictReader(written["agreement.csv"].open()))
    pair = next(
        r
        for r in agreement
        if r["Run"] == "Base"
        and r["Score"] == "prediction_score"
        and {r["Rater A"], r["Rater B"]} == {"gpt", "Rule"}
    )
    # gpt prediction [1,1,1,0] vs rule [1,0,1,1]: po = 0.5, pe = 0.75*0.75 + 0.25*0.25 = 0.625 -> kappa -1/3
    assert int(pair["n"]) == 4 and float(pair["Agreement %"]) == 50.0
    assert float(pair["Cohen's kappa"]) == pytest.approx(-1 / 3, abs=1e-3)
    gg = next(
        r
        for r in agreement
        if r["Run"] == "Base"
        and r["Score"] == "reasoning_score"
        and {r["Rater A"], r["Rater B"]} == {"gpt", "gemini"}
    )
    assert int(gg["n"]) == 3  # the failed item is left out of the pair

    assert "Every sample is in the denominator" in report
    for png in ("dataset_scores.png", "reward_curves.png"):
        assert f"![{png}]({png})" in report
        with Image.open(written[png]) as image:
            assert image.format == "PNG" and image.width > 300


def test_human_ratings_become_columns_and_kappa(tmp_path):
    from rarl.review.store import RatingStore

    run, records = make_run(tmp_path, "rarl", "rarl-model", PREDS, {"gpt": [(1, 1), (0, 0), (1, 1), (0, 1)]})
    store = RatingStore(tmp_path / "ratings.sqlite")
    store.register_items(records)
    for rater, scores in {"ann": [(1, 1), (0, 0), (1, 1)], "bob": [(1, 1), (1, 0), (0, 1)]}.items():
        for record, (rs, ps) in zip(records, scores, strict=False):
            store.save(rater, record, rs, ps)
    written = build_report([run], tmp_path / "out", human_db=tmp_path / "ratings.sqlite")
    rows = {row["Dataset"]: row for row in csv.DictReader(written["judges.csv"].open())}
    human = ["Human Reasoning %", "Human Final %"]
    # vqa_rad: item0 means (1,1), item1 means (0.5, 0) -> reasoning 75, final 50; slake: item2 (0.5, 1)
    assert [float(rows["vqa_rad"][c]) for c in human] == [75.0, 50.0]
    assert [float(rows["slake"][c]) for c in human] == [50.0, 100.0]
    assert rows["vqa_rad"]["Human Final % n"] == "2"
    assert "3 rated items only" in written["report.md"].read_text()
    agreement = list(csv.DictReader(written["agreement.csv"].open()))
    assert any({r["Rater A"], r["Rater B"]} == {"gpt", "Human"} and r["n"] == "3" for r in agreement)


def test_ratings_under_another_model_name_are_used_for_the_only_run_with_a_warning(tmp_path, caplog):
    """attach_human's fallback: one run, one rated model whose name differs (e.g. the adapter path was
    added): the ratings are used, with a warning; with two rated models none is guessed."""
    from rarl.review.store import RatingStore

    run, records = make_run(tmp_path, "rarl", "rarl-model", PREDS, {"gpt": [(1, 1), (0, 0), (1, 1), (0, 1)]})
    database = tmp_path / "ratings.sqlite"
    store = RatingStore(database)
    store.register_items(records)
    for record, (rs, ps) in zip(records, [(1, 1), (0, 1), (1, 0)], strict=False):
        store.save("ann", dataclasses.replace(record, model="rarl-model+outputs/adapter"), rs, ps)
    with caplog.at_level("WARNING"):
        written = build_report([run], tmp_path / "out", human_db=database)
    assert "outputs are under another model name" in caplog.text
    rows = {row["Dataset"]: row for row in csv.DictReader(written["judges.csv"].open())}
    # by hand: vqa_rad items rated (1,1) and (0,1) -> Reasoning 50 %, Final 100 %; slake (1,0) -> 100, 0
    assert [float(rows["vqa_rad"][c]) for c in ("Human Reasoning %", "Human Final %")] == [50.0, 100.0]
    assert [float(rows["slake"][c]) for c in ("Human Reasoning %", "Human Final %")] == [100.0, 0.0]

    store.save("ann", dataclasses.replace(records[0], model="a-third-model"), 1, 1)  # which one: ambiguous
    written = build_report([run], tmp_path / "out2", human_db=database)
    header = next(csv.reader(written["judges.csv"].open()))
    assert not any(column.startswith("Human") for column in header)


def test_ratings_belong_to_the_run_and_output_that_was_rated(tmp_path, caplog):
    """Two runs of one model (reasoning and non-reasoning prompt) and a regenerated file: only the outputs
    that were rated get Human columns; the others show none, however many ratings the model has."""
    from rarl.review.store import RatingStore

    rated, records = make_run(tmp_path, "reasoning", "m", PREDS, {"gpt": [(1, 1)] * 4})
    other_prompt, _ = make_run(tmp_path, "plain", "m", PREDS, {"gpt": [(1, 1)] * 4}, prompt="non_reasoning")
    regenerated_preds = [(ds, ref, "maybe") for ds, ref, _ in PREDS]
    regenerated, _ = make_run(tmp_path, "regen", "m", regenerated_preds, {"gpt": [(1, 1)] * 4})
    database = tmp_path / "ratings.sqlite"
    store = RatingStore(database)
    store.register_items(records)
    for record in records:
        store.save("ann", record, 1, 1)
    written = build_report(
        [rated, other_prompt, regenerated], tmp_path / "out", labels=["R", "P", "G"], human_db=database
    )
    rows = {row["Dataset"]: row for row in csv.DictReader(written["judges.csv"].open())}
    header = list(next(iter(rows.values())))
    assert [float(rows[ds]["R · Human Final %"]) for ds in ("vqa_rad", "slake")] == [100.0, 100.0]
    assert rows["vqa_rad"]["R · Human Final % n"] == "2"
    assert not any(c.startswith(("P · Human", "G · Human")) for c in header)


def test_ratings_of_an_old_database_are_kept_but_never_joined(tmp_path, caplog):
    """A version-1 database (ratings keyed by model and item only) opens, keeps its rows for export, and
    the report joins none of them to a run, saying how many it left out."""
    import sqlite3

    from rarl.review.store import RatingStore, load_ratings

    run, records = make_run(tmp_path, "rarl", "rarl-model", PREDS, {"gpt": [(1, 1)] * 4})
    database = tmp_path / "old.sqlite"
    with sqlite3.connect(database) as conn:  # the version-1 layout, as rarl 0.1 wrote it
        conn.executescript(
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE items (model TEXT NOT NULL, item_key TEXT NOT NULL, dataset TEXT NOT NULL,"
            " split TEXT NOT NULL, item_id TEXT NOT NULL, question TEXT NOT NULL,"
            " reference_answer TEXT NOT NULL, pred_answer TEXT NOT NULL, PRIMARY KEY (model, item_key));"
            "CREATE TABLE ratings (rater TEXT NOT NULL, model TEXT NOT NULL, item_key TEXT NOT NULL,"
            " reasoning_score INTEGER NOT NULL, prediction_score INTEGER NOT NULL,"
            " comment TEXT NOT NULL DEFAULT '', blind INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,"
            " updated_at TEXT NOT NULL, UNIQUE (rater, model, item_key));"
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, rater TEXT NOT NULL,"
            " model TEXT NOT NULL, item_key TEXT NOT NULL, reasoning_score INTEGER NOT NULL,"
            " prediction_score INTEGER NOT NULL, comment TEXT NOT NULL, at TEXT NOT NULL);"
        )
        conn.executemany(
            "INSERT INTO ratings VALUES ('ann', 'rarl-model', ?, 1, 1, '', 0, 't', 't')",
            [(r.key,) for r in records],
        )
    RatingStore(database)  # migrates
    assert len(load_ratings(database)) == 4
    with caplog.at_level("WARNING"):
        written = build_report([run], tmp_path / "out", human_db=database)
    assert "4 ratings from an older rarl" in caplog.text
    header = next(csv.reader(written["judges.csv"].open()))
    assert not any(column.startswith("Human") for column in header)
    RatingStore(database).save("ann", records[0], 0, 1)  # the migrated database takes new ratings
    assert len(load_ratings(database)) == 5


def test_reasoning_is_na_where_the_judge_prompt_scores_no_reasoning(tmp_path):
    """The paper's judge on items without a reference reasoning: Final % as usual, Reasoning % n/a, and
    those items are neither a Reasoning outcome nor a judge rating of reasoning."""
    import dataclasses as dc

    from rarl.report.tables import item_outcomes, load_run, rater_scores

    run_dir, records = make_run(tmp_path, "paper", "m", PREDS, {"gpt": [(1, 1), (0, 0), (1, 1), (1, 1)]})
    path = run_dir / "judgements" / "gpt.jsonl"
    judgements = [
        dc.replace(j, reasoning_score=None, reasoning_applicable=False, prompt="paper")
        for j in read_judgements(path)
    ]
    write_judgements(path, judgements)
    results = json.loads((run_dir / "results.json").read_text())
    results["judges"]["gpt"]["summary"] = judge_summary_of(records, judgements, "gpt")
    (run_dir / "results.json").write_text(json.dumps(results))
    written = build_report([run_dir], tmp_path / "out")
    rows = {row["Dataset"]: row for row in csv.DictReader(written["judges.csv"].open())}
    assert rows["All"]["gpt Reasoning %"] == "n/a"
    assert float(rows["All"]["gpt Final %"]) == 75.0
    run = load_run(run_dir)
    assert item_outcomes(run)["gpt Reasoning"] == {}
    assert rater_scores(run, "reasoning")["gpt"] == {}


def test_report_cli_and_user_errors(tmp_path, capsys):
    run, _ = make_run(tmp_path, "run1", "m", PREDS, {})
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "Rule metrics per dataset" in out and (tmp_path / "rep" / "rule_metrics.csv").exists()
    assert not (tmp_path / "rep" / "judges.csv").exists()  # no judges, no judge table
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "rep")]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert main(["report", str(run), "--train-run", str(tmp_path), "--out", str(tmp_path / "rep")]) == 2
    assert "no metrics.jsonl or trainer_state.json" in capsys.readouterr().err


def test_training_log_from_latest_checkpoint_trainer_state(tmp_path):
    from rarl.report.plots import read_training_log, reward_series

    for step, rewards in ((2, [0.1, 0.2]), (10, [0.1, 0.2, 0.4, float("nan")])):
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        history = [{"step": i + 1, "reward": r, "rewards/format/mean": r / 2} for i, r in enumerate(rewards)]
        history.append({"step": len(rewards), "train_runtime": 1.0})
        (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    series = reward_series(read_training_log(tmp_path))
    assert series["reward"] == ([1.0, 2.0, 3.0], [0.1, 0.2, 0.4])  # checkpoint-10 (not -2); NaN skipped
    assert series["format"][1] == [0.05, 0.1, 0.2]


@pytest.mark.parametrize("out", ["existing.txt", "existing.txt/sub", ""])
def test_report_out_that_cannot_be_a_directory_is_one_line_before_any_work(
    tmp_path, capsys, monkeypatch, out
):
    run, _ = make_run(tmp_path, "run1", "m", PREDS, {})
    (tmp_path / "existing.txt").write_text("keep me")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    target = str(tmp_path / out) if out else out
    assert main(["report", str(run), "--out", target]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rarl report: error: ") and "--out" in err
    assert (tmp_path / "existing.txt").read_text() == "keep me"
    assert not list((tmp_path / "cwd").iterdir())  # an empty --out never means "write here"


@pytest.mark.parametrize(
    "state", [b'{"log_history": [{"step": 1, "reward": \xff}]}', b"[" * 100_000], ids=["not-utf8", "deep"]
)
def test_an_unreadable_trainer_state_is_one_line(tmp_path, capsys, state):
    run, _ = make_run(tmp_path, "run1", "m", PREDS, {})
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "trainer_state.json").write_bytes(state)
    assert (
        main(["report", str(run), "--train-run", str(tmp_path / "train"), "--out", str(tmp_path / "r")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rarl report: error: {tmp_path / 'train' / 'trainer_state.json'}")
    assert len(err.splitlines()) == 1
