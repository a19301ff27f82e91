"""Ratings store: one row per rater and rated output, idempotent upserts, crash safety, exports, means."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rarl.cli import main
from rarl.errors import UserError
from rarl.review.store import RatingStore, export_ratings, human_scores_by_output, load_ratings
from rarl.schema.records import PredictionRecord


def _record(item_id: str, model: str = "m1", answer: str = "yes") -> PredictionRecord:
    return PredictionRecord(
        id=item_id,
        dataset="vqa_rad",
        split="test",
        question=f"Is there an effusion in {item_id}?",
        question_type="closed",
        reference_answer="yes",
        model=model,
        prompt="reasoning",
        raw_output=f"<think>r</think><answer>{answer}</answer>",
        pred_reasoning="r",
        pred_answer=answer,
    )


def test_upsert_keeps_one_row_per_rater_and_item(tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    store = RatingStore(db)
    first = store.save("dr a", _record("1", "m1"), 1, 0, "first look")
    again = store.save("dr a", _record("1", "m1"), "1", "0", "first look")  # double submit
    changed = store.save("dr a", _record("1", "m1"), 0, 1, "changed my mind")
    store.save("dr b", _record("1", "m1"), 1, 1)
    store.save("Dr Mu\u0308ller", _record("1", "m1"), 1, 1)  # combining umlaut
    store.save("  Dr  M\u00fcller ", _record("1", "m1"), 1, 1)  # composed: the same rater

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT rater, reasoning_score, prediction_score, comment FROM ratings ORDER BY rater"
        ).fetchall()
        n_events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert rows == [("Dr M\u00fcller", 1, 1, ""), ("dr a", 0, 1, "changed my mind"), ("dr b", 1, 1, "")]
    assert n_events == 6  # every submission is audited even though the rating row is updated in place
    assert journal == "wal"
    assert first["created_at"] == again["created_at"] == changed["created_at"]
    assert changed["updated_at"] >= first["updated_at"]


@pytest.mark.parametrize(
    ("rater", "r_score", "p_score", "message"),
    [
        ("", 1, 1, "rater name"),
        ("<script>", 1, 1, "rater name"),
        ("dr a", 2, 1, "reasoning_score must be 0 or 1"),
        ("dr a", 1, None, "prediction_score must be 0 or 1"),
        ("dr a", "yes", 1, "reasoning_score must be 0 or 1"),
    ],
)
def test_bad_ratings_are_user_errors(tmp_path: Path, rater: str, r_score, p_score, message: str) -> None:
    store = RatingStore(tmp_path / "r.sqlite")
    with pytest.raises(UserError, match=message):
        store.save(rater, _record("k"), r_score, p_score)
    assert store.rows() == []


def test_saved_rating_survives_a_hard_kill(tmp_path: Path) -> None:
    """A rating is committed when save() returns: killing the process right after loses nothing."""
    db = tmp_path / "ratings.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from rarl.review.store import RatingStore
        from rarl.schema.records import PredictionRecord
        store = RatingStore({str(db)!r})
        for i in range(3):
            record = PredictionRecord(
                id=str(i), dataset="d", split="s", question="q", question_type="closed",
                reference_answer="yes", model="m1", prompt="reasoning", raw_output="yes",
                pred_reasoning="", pred_answer="yes",
            )
            store.save("dr a", record, 1, i % 2, "ok")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -9, result.stderr
    rows = load_ratings(db)
    assert [(r["item_key"], r["prediction_score"]) for r in rows] == [
        ("d/s/0", 0),
        ("d/s/1", 1),
        ("d/s/2", 0),
    ]


def test_human_scores_average_over_raters_per_model(tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    store = RatingStore(db)
    store.register_items([_record("1"), _record("2")])
    store.save("a", _record("1", "m1"), 1, 1)
    store.save("b", _record("1", "m1"), 0, 1)
    store.save("c", _record("1", "m1"), 0, 0)
    store.save("a", _record("2", "m1"), 1, 0)

    scores = human_scores_by_output(db)
    one, two = _record("1").output_id, _record("2").output_id
    assert scores[one]["n_raters"] == 3
    assert scores[one]["reasoning_score"] == pytest.approx(1 / 3)
    assert scores[one]["prediction_score"] == pytest.approx(2 / 3)
    assert scores[two] == {"reasoning_score": 1.0, "prediction_score": 0.0, "n_raters": 1}

    store.save("a", _record("1", "m2"), 0, 0)
    by_output = human_scores_by_output(db)
    assert set(by_output) == {one, two, _record("1", "m2").output_id}
    expected = {"reasoning_score": 0.0, "prediction_score": 0.0, "n_raters": 1}
    assert by_output[_record("1", "m2").output_id] == expected
    assert {k: by_output[k] for k in (one, two)} == scores  # another model's rating never mixes in


def test_missing_database_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        human_scores_by_output(tmp_path / "nope.sqlite")
    assert not (tmp_path / "nope.sqlite").exists()


def test_export_csv_and_jsonl(tmp_path: Path) -> None:
    db = tmp_path / "ratings.sqlite"
    store = RatingStore(db)
    formula, plain = _record("1", answer='=HYPERLINK("http://x")'), _record("2")
    store.register_items([formula, plain])
    store.save("dr a", formula, 0, 0, 'says "=1+1", wrong')
    store.save("dr a", plain, 1, 1, "")

    assert export_ratings(db, "jsonl", tmp_path / "out.jsonl") == 2
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["item_id"], r["reasoning_score"], r["prediction_score"]) for r in lines] == [
        ("1", 0, 0),
        ("2", 1, 1),
    ]
    assert lines[0]["pred_answer"] == '=HYPERLINK("http://x")'  # JSONL keeps text verbatim
    assert lines[0]["question"] == "Is there an effusion in 1?"

    assert export_ratings(db, "csv", tmp_path / "out.csv") == 2
    with (tmp_path / "out.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["comment"] == 'says "=1+1", wrong'
    assert rows[0]["pred_answer"] == '\'=HYPERLINK("http://x")'  # spreadsheet formula neutralised
    assert rows[1]["rater"] == "dr a" and rows[1]["prediction_score"] == "1"

    with pytest.raises(UserError, match="unknown export format"):
        export_ratings(db, "xlsx", tmp_path / "out.xlsx")


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "ratings.sqlite"
    RatingStore(db).save("dr a", _record("1"), 1, 0)
    out = tmp_path / "exp" / "ratings.csv"
    assert main(["review", "export", "--db", str(db), "--out", str(out)]) == 0
    assert "wrote 1 ratings" in capsys.readouterr().out
    fingerprint = _record("1").output_fingerprint
    assert out.read_text().splitlines()[1].startswith(f"dr a,m1,reasoning,vqa_rad/test/1,{fingerprint},")
    assert main(["review", "export", "--db", str(tmp_path / "missing.sqlite"), "--out", str(out)]) == 2
    assert "ratings database not found" in capsys.readouterr().err
    assert main(["review", "export", "--db", str(db), "--out", str(tmp_path / "r.xlsx")]) == 2
    assert "--format" in capsys.readouterr().err


def test_concurrent_submits_of_one_item_leave_one_row(tmp_path: Path) -> None:
    """The threaded server may run two saves of the same item at once (double click): still one row."""
    from concurrent.futures import ThreadPoolExecutor

    store = RatingStore(tmp_path / "ratings.sqlite")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: store.save("dr a", _record("1"), i % 2, 1, f"try {i}"), range(16)))
    rows = store.rows()
    assert len(rows) == 1 and rows[0]["comment"].startswith("try ")
    with sqlite3.connect(tmp_path / "ratings.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 16


def test_a_file_that_is_not_sqlite_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "ratings.sqlite").write_text("these are my notes, not a database\n" * 20)
    with pytest.raises(UserError, match="not a usable ratings database"):
        RatingStore(tmp_path / "ratings.sqlite")


@pytest.mark.parametrize("fmt", [[], ["--format", "csv"]])
def test_cli_export_to_a_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt
) -> None:
    db = tmp_path / "ratings.sqlite"
    RatingStore(db).save("dr a", _record("1"), 1, 0)
    (tmp_path / "exports.csv").mkdir()  # a directory, even one named like a CSV file
    for out in (tmp_path / "exports.csv", tmp_path):
        assert main(["review", "export", "--db", str(db), "--out", str(out), *fmt]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"rarl review: error: {out}: --out names a directory")
        assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports.csv", "ratings.sqlite"]
