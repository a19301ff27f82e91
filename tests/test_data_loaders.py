"""Loaders for every official format (project-made fixtures in tests/fixtures/data) and bad input."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rarl.config import DatasetSpec
from rarl.data.images import load_image
from rarl.errors import DataError, UserError
from rarl.tasks.loading import load_dataset_spec

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def load(source: str, path: Path | str, split: str = "train", **kwargs):
    return load_dataset_spec(DatasetSpec(source=source, path=str(path), split=split, **kwargs))


def types(samples):
    return [s.question_type for s in samples]


def test_vqa_rad_phrase_type_splits_and_answer_types(caplog):
    with caplog.at_level(logging.INFO, logger="rarl"):
        train = load("vqa_rad", FIXTURES / "vqa_rad", "train")
    test = load("vqa_rad", FIXTURES / "vqa_rad" / "VQA_RAD Dataset Public.json", "test")
    assert len(train) == 5 and len(test) == 3
    assert {s.extra["phrase_type"] for s in train} == {"freeform", "para"}
    assert {s.extra["phrase_type"] for s in test} == {"test_freeform", "test_para"}
    first = train[0]
    assert (first.id, first.question, first.answer, first.question_type) == (
        "0",
        "Are regions of the brain infarcted?",
        "Yes",
        "closed",
    )
    assert first.image.endswith("VQA_RAD Image Folder/synpic54610.jpg")
    count = next(s for s in train if s.question.startswith("How many"))
    assert count.answer == "2" and count.question_type == "open"  # integer answer in the JSON
    assert next(s for s in train if s.answer == "No").question_type == "closed"  # "CLOSED " with a space
    assert types(train) == ["closed", "closed", "open", "open", "closed"]
    assert "closed 3, open 2, choice 0" in caplog.text
    with pytest.raises(UserError, match="splits train and test"):
        load("vqa_rad", FIXTURES / "vqa_rad", "validation")


def test_slake_english_only_with_split_aliases(caplog):
    with caplog.at_level(logging.INFO, logger="rarl"):
        train = load("slake", FIXTURES / "slake", "train")
    assert [s.question for s in train] == [
        "What modality is used to take this image?",
        "Does the picture contain brain edema?",
        "Which organ is abnormal?",
    ]
    assert types(train) == ["open", "closed", "open"]
    assert train[0].modality == "MRI" and train[0].image.endswith("imgs/xmlab1/source.jpg")
    assert "2 rows filtered out (q_lang 'zh', English only)" in caplog.text
    for alias in ("validation", "val", "validate"):
        val = load("slake", FIXTURES / "slake", alias)
        assert [(s.answer, s.question_type) for s in val] == [("No", "closed")]
    test = load("slake", FIXTURES / "slake" / "test.json", "test")
    assert len(test) == 3 and test[0].answer == "Left Lung, Right"


def test_vqa_med_2019_pipes_categories_and_alternatives(caplog):
    root = FIXTURES / "vqa_med_2019"
    with caplog.at_level(logging.INFO, logger="rarl"):
        train = load("vqa_med_2019", root, "train")
    assert len(train) == 5
    assert (train[0].question, train[0].answer) == ("what kind of scan is this?", "ct")
    assert train[0].image.endswith("Train_images/synpic41148.jpg")
    assert types(train) == ["open", "open", "open", "closed", "open"]
    assert "question type inferred for 5 rows (rule: closed when the answer" in caplog.text
    val = load("vqa_med_2019", root, "val")
    assert [s.answer for s in val] == ["mr - t2 weighted", "no"]
    assert val[0].image.endswith("Val_images/synpic19782.jpg")
    test = load(
        "vqa_med_2019", root / "VQAMed2019Test" / "VQAMed2019_Test_Questions_w_Ref_Answers.txt", "test"
    )
    assert [s.extra["category"] for s in test] == [
        "modality",
        "plane",
        "organ",
        "abnormality",
        "abnormality",
        "modality",
    ]
    assert test[4].answer == "lipoma#lipomas"  # '#' alternatives kept for answers_match
    assert test[5].answer == "yes (gi contrast)#yes" and test[5].question_type == "closed"
    assert test[0].image.endswith("VQAMed2019_Test_Images/synpic54082.jpg")


def test_pathvqa_pickle_and_parquet_agree():
    pkl = {split: load("pathvqa", FIXTURES / "pathvqa" / "pvqa", split) for split in ("train", "val", "test")}
    assert [len(v) for v in pkl.values()] == [3, 1, 2]
    assert pkl["train"][0].image.endswith("images/train/train_0422.jpg")
    assert types(pkl["train"]) == ["open", "closed", "closed"]
    assert all(s.modality == "pathology" for s in pkl["test"])
    single_file = load("pathvqa", FIXTURES / "pathvqa" / "pvqa" / "qas" / "test" / "test_qa.pkl", "test")
    assert [s.question for s in single_file] == [s.question for s in pkl["test"]]
    parquet = load("pathvqa", FIXTURES / "pathvqa_parquet" / "data", "train")
    assert [(s.question, s.answer, s.question_type) for s in parquet] == [
        (s.question, s.answer, s.question_type) for s in pkl["train"]
    ]
    assert load_image(parquet[0].image).size == (16, 16)  # embedded bytes decode to an image


def test_cvbench_parquet_and_jsonl_with_task_filter():
    parquet = load("cvbench", FIXTURES / "cvbench" / "parquet", "test")
    jsonl = load("cvbench", FIXTURES / "cvbench" / "jsonl" / "test.jsonl", "test")
    assert len(parquet) == len(jsonl) == 5
    assert all(s.question_type == "choice" for s in parquet)
    first = parquet[0]
    assert (first.question, first.choices, first.answer, first.extra["task"]) == (
        "How many chairs are in the image?",
        ["3", "2", "0", "1"],
        "(B)",
        "Count",
    )
    for a, b in zip(parquet, jsonl, strict=True):
        assert (a.id, a.question, a.choices, a.answer) == (b.id, b.question, b.choices, b.answer)
        assert np.array_equal(np.asarray(load_image(a.image)), np.asarray(load_image(b.image)))
    depth = load("cvbench", FIXTURES / "cvbench" / "parquet", "test", tasks=["Depth", "Distance"])
    assert [s.extra["task"] for s in depth] == ["Depth", "Distance"]
    with pytest.raises(UserError, match=r"unknown .*'Colour'"):
        load("cvbench", FIXTURES / "cvbench" / "parquet", "test", tasks=["Colour"])


def test_reasoning_jsonl_key_aliases_and_split_field(tmp_path, caplog):
    shutil.copy(FIXTURES / "slake" / "imgs" / "xmlab1" / "source.jpg", tmp_path / "a.jpg")
    rows = [
        {
            "question": "Is the lung clear?",
            "explanation": "No opacity is seen.",
            "answer": "Yes",
            "image": "a.jpg",
            "split": "train",
        },
        {
            "question": "Which lobe?",
            "reasoning": "The density is apical.",
            "short_answer": "upper lobe",
            "image_path": str(tmp_path / "a.jpg"),
            "split": "train",
            "question_type": "open",
        },
        {
            "question": "Pick one",
            "reasoning": "r",
            "answer": "(A)",
            "img_name": "a.jpg",
            "choices": ["x", "y"],
            "split": "test",
        },
    ]
    (tmp_path / "all.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with caplog.at_level(logging.INFO, logger="rarl"):
        train = load("reasoning_jsonl", tmp_path / "all.jsonl", "train")
    assert [(s.answer, s.reasoning, s.question_type) for s in train] == [
        ("Yes", "No opacity is seen.", "closed"),
        ("upper lobe", "The density is apical.", "open"),
    ]
    assert "1 rows filtered out (split 'test')" in caplog.text
    assert "question type inferred for 1 rows" in caplog.text
    test = load("reasoning_jsonl", tmp_path / "all.jsonl", "test")
    assert test[0].question_type == "choice" and test[0].choices == ["x", "y"]


def test_parquet_with_column_map_and_hf_local_dataset(tmp_path):
    table = pa.table(
        {
            "img": [
                {"bytes": (FIXTURES / "slake" / "imgs" / "xmlab2" / "source.jpg").read_bytes(), "path": None}
            ]
            * 2,
            "q": ["Is there a mass?", "What organ?"],
            "a": ["no", "liver"],
            "why": ["The contour is smooth.", None],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet")
    mapping = {"img": "image", "q": "question", "a": "answer", "why": "reasoning"}
    samples = load("parquet", tmp_path / "train.parquet", column_map=mapping)
    assert [(s.question, s.answer, s.question_type, s.reasoning) for s in samples] == [
        ("Is there a mass?", "no", "closed", "The contour is smooth."),
        ("What organ?", "liver", "open", None),
    ]
    assert len({s.id for s in samples}) == 2
    with pytest.raises(DataError, match=r"train\.parquet, row 1, field 'image': missing .*column_map"):
        load("parquet", tmp_path / "train.parquet")
    with pytest.raises(UserError, match="not Sample fields"):
        load("parquet", tmp_path / "train.parquet", column_map={"q": "query"})
    hf = load("hf", FIXTURES / "pathvqa_parquet", "test")  # datasets.load_dataset on a local folder
    assert [s.answer for s in hf] == ["yes", "in sheets"]
    with pytest.raises(UserError, match="nothing_here: dataset path not found"):  # local-looking: no hub call
        load("hf", tmp_path / "nothing_here", "train")


# --------------------------------------------------------------------------------------------------
# bad input: an error naming file, row and field — or, with skip_bad, a logged count


def _slake_copy(tmp_path: Path, edit) -> Path:
    root = tmp_path / "slake"
    shutil.copytree(FIXTURES / "slake", root)
    rows = json.loads((root / "train.json").read_text())
    edit(rows)
    (root / "train.json").write_text(json.dumps(rows, ensure_ascii=False))
    return root


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda rows: rows[2].update(img_name="xmlab9/missing.jpg"),
            r"1 of 3 rows name an image file that is not there \(first: missing.jpg \(row 3\)\); set skip",
        ),
        (lambda rows: rows[2].update(question="  "), r"row 3, field 'question': is empty"),
        (
            lambda rows: rows[2].update(question=["a", "list"]),
            r"row 3, field 'question': expected a string, got list",
        ),
        (lambda rows: rows[2].pop("answer"), r"row 3, field 'answer': missing"),
        (
            lambda rows: rows[2].update(answer_type="MAYBE"),
            r"row 3, field 'answer_type': unknown answer type",
        ),
        (lambda rows: rows.__setitem__(2, "not an object"), r"row 3: expected an object, got str"),
    ],
)
def test_bad_rows_raise_naming_file_row_field(tmp_path, edit, message):
    root = _slake_copy(tmp_path, edit)
    with pytest.raises(DataError, match=message) as info:
        load("slake", root, "train")
    assert str(root / "train.json") in str(info.value)


def test_skip_bad_counts_and_logs(tmp_path, caplog):
    def edit(rows):
        rows[0]["img_name"] = "xmlab9/missing.jpg"
        rows[2]["question"] = ""

    root = _slake_copy(tmp_path, edit)
    with caplog.at_level(logging.INFO, logger="rarl"):
        samples = load("slake", root, "train", skip_bad=True)
    assert [s.question for s in samples] == ["Which organ is abnormal?"]
    assert "skipped 2 bad rows (skip_bad)" in caplog.text
    assert "row 1, field 'img_name'" in caplog.text and "row 3, field 'question'" in caplog.text


def test_bad_files_and_specs(tmp_path):
    bad_json = tmp_path / "train.json"
    bad_json.write_text('[{"question": "x",')
    with pytest.raises(DataError, match=r"train\.json, row 1: invalid JSON"):
        load("slake", bad_json, "train")
    med = tmp_path / "All_QA_Pairs_train.txt"
    med.write_text("synpic1|only two fields\n")
    with pytest.raises(DataError, match=r"All_QA_Pairs_train\.txt, row 1: expected 'id\|question\|answer'"):
        load("vqa_med_2019", med, "train")
    with pytest.raises(UserError, match="dataset path not found"):
        load("slake", tmp_path / "absent", "train")
    with pytest.raises(UserError, match="needs a path"):
        load_dataset_spec(DatasetSpec(source="vqa_rad"))
    broken_pickle = tmp_path / "train_qa.pkl"
    broken_pickle.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable pickle"):
        load("pathvqa", broken_pickle, "train")
    cv = tmp_path / "cv.jsonl"
    cv.write_text(
        json.dumps(
            {"task": "Count", "question": "q", "choices": ["1", "2"], "answer": "(C)", "filename": "x.png"}
        )
        + "\n"
    )
    with pytest.raises(DataError, match=r"row 1, field 'answer': expected one of \(A\) \(B\)"):
        load("cvbench", cv, "test")


def test_limit_subsample_and_unique_ids(tmp_path):
    subset = load("vqa_med_2019", FIXTURES / "vqa_med_2019", "test", limit=3, seed=7)
    again = load("vqa_med_2019", FIXTURES / "vqa_med_2019", "test", limit=3, seed=7)
    assert len(subset) == 3 and [s.id for s in subset] == [s.id for s in again]
    full_ids = [s.id for s in load("vqa_med_2019", FIXTURES / "vqa_med_2019", "test")]
    assert [s.id for s in subset] == [i for i in full_ids if i in {s.id for s in subset}]  # order kept
    others = [
        {s.id for s in load("vqa_med_2019", FIXTURES / "vqa_med_2019", "test", limit=3, seed=k)}
        for k in range(8)
    ]
    assert len({frozenset(o) for o in others}) > 1  # the seed matters
    shutil.copy(FIXTURES / "slake" / "imgs" / "xmlab1" / "source.jpg", tmp_path / "a.jpg")
    row = {"id": "same", "question": "q", "answer": "yes", "image": "a.jpg"}
    (tmp_path / "train.jsonl").write_text((json.dumps(row) + "\n") * 3)
    assert [s.id for s in load("reasoning_jsonl", tmp_path, "train")] == ["same", "same#2", "same#3"]


def test_jsonl_encoding_and_syntax_errors_name_the_file(tmp_path):
    (tmp_path / "train.jsonl").write_bytes(b'{"question": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl, row 1: not UTF-8 text"):
        load("reasoning_jsonl", tmp_path, "train")
    (tmp_path / "train.jsonl").write_text('{"question": "q"}\n{oops\n{"question": "r"}\n')
    with pytest.raises(DataError, match=r"train\.jsonl, row 2: invalid JSON"):
        load("reasoning_jsonl", tmp_path, "train")


def test_reasoning_jsonl_with_dicom_image_and_pandas_pickle(tmp_path):
    import pandas as pd
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "scan.dcm")
    row = {
        "question": "Is the study a CT?",
        "reasoning": "Axial slice in HU.",
        "answer": "yes",
        "image": "scan.dcm",
    }
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n")
    (sample,) = load("reasoning_jsonl", tmp_path, "train")
    assert load_image(sample.image, max_pixels=64 * 64).size == (64, 64)
    root = tmp_path / "pvqa"
    shutil.copytree(FIXTURES / "pathvqa" / "pvqa", root)
    frame = pd.DataFrame(
        [{"image": "test_0002", "question": "How is the cell arranged?", "answer": "in sheets"}]
    )
    frame.to_pickle(root / "qas" / "test" / "test_qa.pkl")
    assert [s.answer for s in load("pathvqa", root, "test")] == ["in sheets"]


def test_vqa_med_single_file_finds_its_own_images_folder():
    qa = FIXTURES / "vqa_med_2019" / "VQAMed2019Test" / "VQAMed2019_Test_Questions_w_Ref_Answers.txt"
    samples = load("vqa_med_2019", qa)  # spec.split left at its default "train"
    assert len(samples) == 6 and all("VQAMed2019_Test_Images" in s.image for s in samples)


def test_line_separators_inside_dataset_text_do_not_split_rows(tmp_path):
    shutil.copy(FIXTURES / "slake" / "imgs" / "xmlab1" / "source.jpg", tmp_path / "a.jpg")
    rows = [
        {
            "id": str(i),
            "question": f"is there{char}an effusion?",
            "answer": f"yes{char}small",
            "image": "a.jpg",
        }
        for i, char in enumerate(["\u2028", "\u2029", "\u0085"])
    ]
    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    loaded = load("reasoning_jsonl", tmp_path, "train")
    assert [(s.question, s.answer) for s in loaded] == [
        (" ".join(r["question"].split()), " ".join(r["answer"].split())) for r in rows
    ]
    # VQA-Med's pipe-separated text files are line-based too.
    root = tmp_path / "vqamed"
    shutil.copytree(FIXTURES / "vqa_med_2019", root)
    qa = root / "ImageClef-2019-VQA-Med-Training" / "All_QA_Pairs_train.txt"
    lines = qa.read_text(encoding="utf-8").splitlines()
    image, question, answer = lines[0].split("|")
    qa.write_text(
        "\n".join([f"{image}|{question}\u2028(axial)|{answer}", *lines[1:]]) + "\n", encoding="utf-8"
    )
    train = load("vqa_med_2019", root, "train")
    assert len(train) == len(lines) and train[0].question == f"{question} (axial)"


def test_a_lone_surrogate_in_dataset_text_names_row_and_field(tmp_path):
    shutil.copy(FIXTURES / "slake" / "imgs" / "xmlab1" / "source.jpg", tmp_path / "a.jpg")
    row = {"id": "1", "question": "q", "answer": "yes", "image": "a.jpg"}
    bad = json.dumps(row | {"question": "is there \ud800 fluid?"})  # written as the escape \\ud800
    (tmp_path / "train.jsonl").write_text(json.dumps(row) + "\n" + bad + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl, row 2, field 'question': holds a lone surrogate"):
        load("reasoning_jsonl", tmp_path, "train")
