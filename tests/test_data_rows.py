"""Row ids and row text: distinct and reproducible ids of plain values only; a byte-order mark or zero-width
characters never reach a field. Project-made fixtures (tests/fixtures/data) as in test_data_loaders.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rarl.config import DatasetSpec
from rarl.errors import DataError
from rarl.tasks.loading import load_dataset_spec

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def load(source: str, path: Path | str, split: str = "train", **kwargs):
    return load_dataset_spec(DatasetSpec(source=source, path=str(path), split=split, **kwargs))


# --------------------------------------------------------------------------------------------------
# ids: distinct, reproducible, plain values only


def _jsonl_ids(tmp_path: Path, ids: list) -> Path:
    shutil.copy(FIXTURES / "slake" / "imgs" / "xmlab1" / "source.jpg", tmp_path / "a.jpg")
    rows = [{"id": i, "question": f"q{n}", "answer": "yes", "image": "a.jpg"} for n, i in enumerate(ids)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return tmp_path


@pytest.mark.parametrize(
    "ids", [["a", "a", "a#2"], ["a#2", "a", "a"], ["a", "a#2", "a", "a", "a#3"], ["a", "a", "a#2", "a#2"]]
)
def test_repeated_ids_become_distinct_without_taking_an_id_the_file_uses(tmp_path, ids):
    root = _jsonl_ids(tmp_path, ids)
    samples = load("reasoning_jsonl", root, "train")
    got = [s.id for s in samples]
    assert len(set(got)) == len(ids)  # every row its own id: predictions are keyed by it
    first_of_each = {i: got[ids.index(i)] for i in set(ids)}
    assert all(first_of_each[i] == i for i in ids)  # the first row with an id keeps it
    assert [s.question for s in samples] == [f"q{n}" for n in range(len(ids))]  # order kept
    assert [s.id for s in load("reasoning_jsonl", root, "train")] == got  # a rerun gives the same ids
    subset = load("reasoning_jsonl", root, "train", limit=2, seed=3)
    assert {s.question: s.id for s in subset}.items() <= {s.question: s.id for s in samples}.items()


@pytest.mark.parametrize(
    ("raw_id", "problem"),
    [
        ('["a"]', "expected a string, got list"),
        ('{"x": 1}', "expected a string, got dict"),
        ("true", "expected a string, got bool"),
        ("NaN", "is nan"),
        ("Infinity", "is inf"),
    ],
)
def test_non_scalar_or_nan_id_is_an_error_naming_the_field(tmp_path, raw_id, problem):
    root = _jsonl_ids(tmp_path, ["ok"])
    with (root / "train.jsonl").open("a") as handle:
        handle.write(f'{{"id": {raw_id}, "question": "q", "answer": "no", "image": "a.jpg"}}\n')
    with pytest.raises(DataError, match=rf"train\.jsonl, row 2, field 'id': {problem}"):
        load("reasoning_jsonl", root, "train")


def test_null_or_whole_float_ids_are_plain_ids(tmp_path):
    root = _jsonl_ids(tmp_path, [None, 7.0, 8])
    assert [s.id for s in load("reasoning_jsonl", root, "train")] == ["1", "7", "8"]  # row number, int


def test_nan_id_in_parquet_names_the_mapped_column(tmp_path):
    shutil.copy(FIXTURES / "slake" / "imgs" / "xmlab1" / "source.jpg", tmp_path / "a.jpg")
    table = pa.table(
        {"qid": [1.0, float("nan")], "image": ["a.jpg"] * 2, "question": ["q"] * 2, "answer": ["no"] * 2}
    )
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"train\.parquet, row 2, field 'qid': is nan"):
        load("parquet", tmp_path / "train.parquet", column_map={"qid": "id"})


@pytest.mark.parametrize(
    ("source", "file"), [("slake", "train.json"), ("vqa_rad", "VQA_RAD Dataset Public.json")]
)
def test_list_id_in_official_json_is_an_error(tmp_path, source, file):
    root = tmp_path / source
    shutil.copytree(FIXTURES / source, root)
    rows = json.loads((root / file).read_text())
    rows[0]["qid"] = [1, 2]
    (root / file).write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"row 1, field 'qid': expected a string, got list"):
        load(source, root, "train")


# --------------------------------------------------------------------------------------------------
# a UTF-8 byte-order mark (Excel, Windows editors) or zero-width characters never reach a field


def test_bom_at_the_start_of_a_vqa_med_qa_file_is_not_part_of_the_first_image_name(tmp_path):
    root = tmp_path / "vqa_med_2019"
    shutil.copytree(FIXTURES / "vqa_med_2019", root)
    qa = next(root.rglob("All_QA_Pairs_train.txt"))
    plain = load("vqa_med_2019", root, "train")
    qa.write_bytes(b"\xef\xbb\xbf" + qa.read_bytes())
    with_bom = load("vqa_med_2019", root, "train")
    assert [(s.id, s.image, s.question, s.answer) for s in with_bom] == [
        (s.id, s.image, s.question, s.answer) for s in plain
    ]


@pytest.mark.parametrize("source", ["slake", "vqa_rad"])
def test_bom_at_the_start_of_a_json_question_file_is_dropped(tmp_path, source):
    root = tmp_path / source
    shutil.copytree(FIXTURES / source, root)
    plain = load(source, root, "train")
    file = root / ("train.json" if source == "slake" else "VQA_RAD Dataset Public.json")
    file.write_bytes(b"\xef\xbb\xbf" + file.read_bytes())
    assert [(s.id, s.question, s.answer) for s in load(source, root, "train")] == [
        (s.id, s.question, s.answer) for s in plain
    ]


def test_zero_width_characters_in_fields_are_dropped(tmp_path):
    root = _jsonl_ids(tmp_path, ["a\u200b", "\ufeffb"])
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    rows[0]["answer"] = "ye\u200bs"
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    samples = load("reasoning_jsonl", root, "train")
    assert [(s.id, s.answer, s.question_type) for s in samples] == [
        ("a", "yes", "closed"),
        ("b", "yes", "closed"),
    ]


def test_hub_layout_card_with_a_bom_is_recognised(tmp_path):
    from rarl.data.hub import is_hub_layout

    card = "---\nconfigs:\n- config_name: default\n  data_files: data/train.csv\n---\n"
    (tmp_path / "README.md").write_bytes(b"\xef\xbb\xbf" + card.encode())
    assert is_hub_layout(tmp_path)
