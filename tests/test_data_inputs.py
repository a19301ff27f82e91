"""Inputs are checked where they enter: bad images, answers and fields stop at load time naming file, row and
field (or are skipped and counted under ``skip_bad``); ``rarl data synthetic`` never overwrites silently."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from rarl.cli import main
from rarl.config import DatasetSpec
from rarl.data import load_dataset_spec
from rarl.errors import DataError


def _good_png(path: Path) -> None:
    Image.new("RGB", (32, 32), (120, 30, 30)).save(path)


def _truncated_jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 60).convert("RGB").save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _truncated_png(path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(buffer, "PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


BAD_IMAGES = {
    "empty": (lambda path: path.write_bytes(b""), "empty file"),
    "truncated_jpeg": (_truncated_jpeg, "not a readable image"),
    "truncated_png": (_truncated_png, "not a readable image"),
    "text_as_png": (lambda path: path.write_text("this is not an image\n"), "not a readable image"),
}


def _jsonl_set(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _good_png(root / "good.png")
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def _row(image: str = "good.png", **fields) -> dict:
    return {"image": image, "question": "Is there a mass?", "answer": "yes", **fields}


def _load(root: Path, skip_bad: bool = False):
    return load_dataset_spec(DatasetSpec(source="reasoning_jsonl", path=str(root), skip_bad=skip_bad))


@pytest.mark.parametrize("kind", sorted(BAD_IMAGES))
def test_undecodable_images_fail_at_load_naming_row_or_are_skipped(tmp_path, kind, caplog):
    make, problem = BAD_IMAGES[kind]
    root = _jsonl_set(tmp_path / "set", [_row(), _row(f"{kind}.img")])
    make(root / f"{kind}.img")
    with pytest.raises(DataError) as info:
        _load(root)
    message = str(info.value)
    assert "train.jsonl, row 2, field 'image'" in message and f"{kind}.img: {problem}" in message
    with caplog.at_level(logging.WARNING, logger="rarl"):
        samples = _load(root, skip_bad=True)
    assert [s.image_path for s in samples] == [str(root / "good.png")]
    assert "skipped 1 bad rows (skip_bad)" in caplog.text


def test_decompression_bomb_is_a_row_error_not_a_traceback(tmp_path, monkeypatch):
    root = _jsonl_set(tmp_path / "set", [_row("huge.png")])
    Image.new("1", (400, 400)).save(root / "huge.png")  # tiny file, but over the lowered pixel limit below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 400 // 4)  # PIL refuses > 2x this: a "bomb"
    with pytest.raises(
        DataError, match=r"row 1, field 'image': .*huge.png: refused as a possible decompression"
    ):
        _load(root)


def test_choice_answer_outside_its_choices_is_an_error(tmp_path):
    rows = [
        _row(answer="(B)", choices=["left", "right"]),
        _row(answer="(D)", choices=["left", "right"]),
    ]
    with pytest.raises(DataError, match=r"row 2, field 'answer': expected one of \(A\) \(B\)"):
        _load(_jsonl_set(tmp_path / "set", rows))


def test_nan_answer_is_an_error_not_the_text_nan(tmp_path):
    root = _jsonl_set(tmp_path / "set", [])
    (root / "train.jsonl").write_text(
        json.dumps(_row()) + "\n" + '{"image": "good.png", "question": "Size?", "answer": NaN}\n'
    )
    with pytest.raises(DataError, match=r"row 2, field 'answer': is nan"):
        _load(root)


def test_nan_cell_in_parquet_is_an_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    _good_png(tmp_path / "good.png")
    # a numeric answer column (counts) as pandas writes it: the empty cell is NaN
    answers = [2.0, float("nan")]
    table = pa.table({"image": ["good.png"] * 2, "question": ["How many?"] * 2, "answer": answers})
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(DataError, match=r"row 2, field 'answer': is nan"):
        load_dataset_spec(DatasetSpec(source="parquet", path=str(tmp_path / "train.parquet")))


def test_non_dict_extra_is_an_error(tmp_path):
    root = _jsonl_set(tmp_path / "set", [_row(extra={"organ": "lung"}), _row(extra=["lung"])])
    with pytest.raises(
        DataError, match=r"row 2, field 'extra': expected a mapping of extra fields, got list"
    ):
        _load(root)
    [kept] = _load(_jsonl_set(tmp_path / "ok", [_row(extra={"organ": "lung"})]))
    assert kept.extra == {"organ": "lung"}


def test_synthetic_refuses_to_overwrite_and_zero_samples(tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert main(["data", "synthetic", str(out), "--num-samples", "4"]) == 0
    before = (out / "train.jsonl").read_text()
    assert main(["data", "synthetic", str(out), "--num-samples", "6", "--seed", "3"]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "train.jsonl").read_text() == before
    assert main(["data", "synthetic", str(out), "--num-samples", "6", "--seed", "3", "--overwrite"]) == 0
    assert len((out / "train.jsonl").read_text().splitlines()) == 6
    assert main(["data", "synthetic", str(tmp_path / "empty"), "--num-samples", "0"]) == 2
    assert "--num-samples must be >= 1 (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()


def test_load_image_turns_a_decompression_bomb_into_one_line(tmp_path, monkeypatch):
    from rarl.data.images import load_image
    from rarl.errors import UserError

    Image.new("1", (400, 400)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 400 // 4)
    with pytest.raises(UserError, match=r"huge.png: refused as a possible decompression bomb"):
        load_image(tmp_path / "huge.png")
