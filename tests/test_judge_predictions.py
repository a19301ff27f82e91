"""One reader and validator of predictions files for `rarl judge`, `rarl review` and `rarl report`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rarl.cli import main
from rarl.errors import DataError
from rarl.report.tables import load_run
from rarl.review.app import load_items
from rarl.schema.predictions import read_predictions


def row(i: int, **changes) -> dict:
    base = {
        "id": str(i),
        "dataset": "vqa_rad",
        "split": "test",
        "question": f"Is there an effusion ({i})?",
        "question_type": "closed",
        "reference_answer": "yes",
        "model": "model-a",
        "prompt": "reasoning",
        "raw_output": "<answer>yes</answer>",
        "pred_reasoning": "",
        "pred_answer": "yes",
    }
    return {**base, **changes}


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


BAD_FILES = [
    ([row(0), {k: v for k, v in row(1).items() if k != "question"}], "row 2, field 'question': missing"),
    ([row(0), row(1, question=["a", "b"])], "row 2, field 'question': expected text, got list"),
    ([row(0), row(1, reference_answer=None)], "row 2, field 'reference_answer': missing"),
    ([row(0), row(1, extra=[1])], "row 2, field 'extra': expected a mapping"),
    (
        [row(0), row(1), row(0)],
        "row 3, field 'id': duplicate item vqa_rad/test/0 of model model-a (first at row 1)",
    ),
    ([row(0), row(1, model="model-b")], "row 2, field 'model': model='model-b'"),
    (
        [row(0), row(1, prompt="non_reasoning")],
        "row 2, field 'model': model='model-a' prompt='non_reasoning'",
    ),
    # "\ud800" in the file decodes to a lone surrogate that no database or UTF-8 file downstream can hold
    ([row(0), row(1, raw_output="x\ud800")], "row 2, field 'raw_output': holds a lone surrogate"),
    ([row(0, question="q\udfff"), row(1)], "row 1, field 'question': holds a lone surrogate"),
]


@pytest.mark.parametrize(("rows", "message"), BAD_FILES)
def test_reader_names_file_line_and_field(tmp_path: Path, rows: list[dict], message: str) -> None:
    path = write_rows(tmp_path / "predictions.jsonl", rows)
    with pytest.raises(DataError, match=str(path).replace(".", r"\.") + ".*" + _escape(message)):
        read_predictions(path)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(("rows", "message"), BAD_FILES)
def test_rarl_judge_refuses_a_bad_file_before_any_request(
    tmp_path: Path, rows: list[dict], message: str, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("RARL_TEST_JUDGE_KEY", "sk-test")
    path = write_rows(tmp_path / "eval" / "predictions.jsonl", rows)
    config = tmp_path / "run.yaml"
    # 127.0.0.1:9 (discard) is never reached: the file is refused first.
    judge = {"name": "j", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "RARL_TEST_JUDGE_KEY"}
    config.write_text(yaml.safe_dump({"judges": [judge]}))
    assert main(["judge", "--config", str(config), "--predictions", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and str(path) in lines[0], err
    assert not (tmp_path / "eval" / "results.json").exists()


def test_report_reads_through_the_same_validator(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_rows(run / "predictions.jsonl", [row(0), row(1), row(0)])
    (run / "results.json").write_text(json.dumps({"model": "model-a", "prompt": "reasoning", "n": 3}))
    with pytest.raises(DataError, match="duplicate item vqa_rad/test/0"):
        load_run(run)


def test_review_accepts_two_models_but_not_one_item_twice(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.jsonl", [row(0), row(0, model="model-b"), row(1)])
    assert [(i.record.model, i.record.key) for i in load_items(path)] == [
        ("model-a", "vqa_rad/test/0"),
        ("model-b", "vqa_rad/test/0"),
        ("model-a", "vqa_rad/test/1"),
    ]
    write_rows(path, [row(0), row(0, model="model-b"), row(0, model="model-b")])
    with pytest.raises(DataError, match="row 3, field 'id': duplicate item vqa_rad/test/0 of model model-b"):
        load_items(path)


def test_a_valid_file_reads_with_defaults_filled_in(tmp_path: Path) -> None:
    minimal = {k: v for k, v in row(0).items() if k not in ("raw_output", "pred_reasoning", "question_type")}
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps(minimal) + "\n\n" + json.dumps(row(1, choices=["yes", "no"])) + "\n" + '{"id": "2", "da'
    )
    first, second = read_predictions(path)  # blank line skipped, truncated tail ignored
    assert (first.raw_output, first.pred_reasoning, first.question_type, first.image) == ("", "", "", None)
    assert second.choices == ["yes", "no"] and second.key == "vqa_rad/test/1"
