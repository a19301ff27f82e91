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
from rarl.errors import DataError
from rarl.tasks.loading import load_dataset_spec


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


# --------------------------------------------------------------------------------------------------
# shapes Qwen2-VL's processor refuses, and DICOM pixel data that does not decode


def _strip_png(path: Path, size: tuple[int, int]) -> None:
    Image.new("RGB", size, (90, 90, 90)).save(path)


def _dicom_from(name: str, path: Path, change) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(name))
    change(ds)
    ds.save_as(path, enforce_file_format=False)


def _wide_dicom(ds) -> None:  # 1000x2 pixels
    import numpy as np

    ds.Rows, ds.Columns = 2, 1000
    ds.PixelData = np.zeros((2, 1000), dtype=np.int16).tobytes()


def _undecodable_j2k(ds) -> None:  # a JPEG 2000 frame whose codestream is garbage after its first bytes
    from pydicom.encaps import encapsulate, generate_frames

    [frame] = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([frame[:20] + b"\0" * (len(frame) - 20)])


BAD_SHAPES = {  # name: (how to write it, its (width, height))
    "wide.png": (lambda path: _strip_png(path, (6000, 20)), (6000, 20)),
    "tall.png": (lambda path: _strip_png(path, (20, 6000)), (20, 6000)),
    "wide.dcm": (lambda path: _dicom_from("CT_small.dcm", path, _wide_dicom), (1000, 2)),
}


@pytest.mark.parametrize("name", sorted(BAD_SHAPES))
def test_aspect_ratio_over_200_fails_at_load_naming_row_or_is_skipped(tmp_path, name, caplog):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    make, (width, height) = BAD_SHAPES[name]
    root = _jsonl_set(tmp_path / "set", [_row(), _row(name)])
    make(root / name)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(height, width)  # the oracle: the processor refuses it, so it must not get that far
    with pytest.raises(DataError) as info:
        _load(root)
    assert "train.jsonl, row 2, field 'image'" in str(info.value)
    assert f"{name}: " in str(info.value) and "aspect ratio" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="rarl"):
        samples = _load(root, skip_bad=True)
    assert [s.image_path for s in samples] == [str(root / "good.png")]
    assert "skipped 1 bad rows (skip_bad)" in caplog.text


BAD_DICOMS = {
    "no_pixels.dcm": ("CT_small.dcm", lambda ds: delattr(ds, "PixelData"), "DICOM file has no pixel data"),
    "truncated.dcm": (
        "CT_small.dcm",
        lambda ds: setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 2]),
        "cannot decode DICOM pixel data",
    ),
    "bad_j2k.dcm": ("MR_small_jp2klossless.dcm", _undecodable_j2k, "cannot decode DICOM pixel data"),
    "no_syntax.dcm": (
        "CT_small.dcm",
        lambda ds: delattr(ds.file_meta, "TransferSyntaxUID"),
        "cannot decode DICOM pixel data",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_DICOMS))
def test_undecodable_dicom_fails_at_load_naming_row_or_is_skipped(tmp_path, name, caplog):
    import pydicom

    source, change, problem = BAD_DICOMS[name]
    root = _jsonl_set(tmp_path / "set", [_row(), _row(name)])
    _dicom_from(source, root / name, change)
    with pytest.raises((AttributeError, ValueError, RuntimeError)):  # the oracle: pydicom cannot decode it
        _ = pydicom.dcmread(root / name).pixel_array
    caplog.clear()
    with caplog.at_level(logging.DEBUG), pytest.raises(DataError) as info:
        _load(root)
    message = str(info.value)
    assert "train.jsonl, row 2, field 'image'" in message and f"{name}: {problem}" in message
    assert "\n" not in message
    assert not [r for r in caplog.records if r.name.startswith("pydicom") and r.levelno >= logging.ERROR]
    with caplog.at_level(logging.WARNING, logger="rarl"):
        samples = _load(root, skip_bad=True)
    assert [s.image_path for s in samples] == [str(root / "good.png")]
    assert "skipped 1 bad rows (skip_bad)" in caplog.text


def test_data_inspect_names_the_row_of_a_bad_dicom_in_one_line(tmp_path, capsys):
    root = _jsonl_set(tmp_path / "set", [_row(), _row("bad_j2k.dcm")])
    _dicom_from("MR_small_jp2klossless.dcm", root / "bad_j2k.dcm", _undecodable_j2k)
    code = main(["data", "inspect", str(root), "--source", "reasoning_jsonl", "--split", "train"])
    err = capsys.readouterr().err
    assert code == 2
    assert "row 2, field 'image'" in err and "bad_j2k.dcm: cannot decode" in err
    assert "Traceback" not in err


def test_ask_refuses_an_extreme_aspect_ratio_before_loading_a_model(tmp_path, capsys):
    _strip_png(tmp_path / "wide.png", (6000, 20))
    code = main(["ask", "--model", str(tmp_path / "no-model"), "--image", str(tmp_path / "wide.png"), "Q?"])
    err = capsys.readouterr().err
    assert code == 2 and "wide.png: 6000x20 pixels: aspect ratio 300:1 is over 200:1" in err


def test_data_audit_refuses_a_strip_image_naming_its_row_or_skips_it(tmp_path, capsys):
    root = _jsonl_set(tmp_path / "set", [_row(), _row("wide.png")])
    _strip_png(root / "wide.png", (6000, 20))
    args = ["data", "audit", str(root), "--source", "reasoning_jsonl", "--split", "train"]
    assert main(args) == 2
    assert "row 2, field 'image'" in capsys.readouterr().err
    assert main([*args, "--skip-bad"]) == 0


def test_embedded_strip_image_in_parquet_is_a_row_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = []
    for size in ((32, 32), (6000, 20)):
        buffer = io.BytesIO()
        Image.new("RGB", size).save(buffer, "PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    table = pa.table({"image": cells, "question": ["Q?"] * 2, "answer": ["yes"] * 2})
    pq.write_table(table, tmp_path / "train.parquet")
    spec = DatasetSpec(source="parquet", path=str(tmp_path / "train.parquet"))
    with pytest.raises(DataError, match=r"row 2, field 'image': embedded image: 6000x20 pixels: aspect"):
        load_dataset_spec(spec)


def test_in_memory_strip_image_from_a_hub_layout_folder_is_a_row_error(tmp_path):
    import datasets

    images = [Image.new("RGB", (32, 32)), Image.new("RGB", (20, 6000))]
    rows = {"image": images, "question": ["Q?"] * 2, "answer": ["yes", "no"]}
    table = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image())
    (tmp_path / "data").mkdir()
    table.to_parquet(tmp_path / "data" / "train-00000-of-00001.parquet")  # decoded back to PIL images
    with pytest.raises(DataError, match=r"row 2, field 'image': image: 20x6000 pixels: aspect ratio 300:1"):
        load_dataset_spec(DatasetSpec(source="hf", path=str(tmp_path), split="train"))


def test_rarl_eval_refuses_a_strip_image_naming_its_row_before_loading_the_model(
    tmp_path, tiny_model_config, monkeypatch, capsys
):
    import yaml

    import rarl.models

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load when a row is bad")

    monkeypatch.setattr(rarl.models, "load_model", no_model)
    root = _jsonl_set(tmp_path / "set", [_row(), _row("wide.png")])
    _strip_png(root / "wide.png", (6000, 20))
    config = {
        "model": {"name_or_path": tiny_model_config.name_or_path},
        "data": {"eval": [{"source": "reasoning_jsonl", "path": str(root), "split": "train"}]},
        "eval": {"output_dir": str(tmp_path / "eval"), "bertscore": False},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(tmp_path / "run.yaml"), "--no-judges"]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert "train.jsonl, row 2, field 'image'" in line and "aspect ratio 300:1" in line


def test_dicom_claiming_a_huge_frame_is_refused_before_decoding(tmp_path, monkeypatch):
    root = _jsonl_set(tmp_path / "set", [_row("huge.dcm")])

    def claim_huge(ds):  # RLE data for 64x64, header claiming 400x400: small file, large allocation
        ds.Rows = ds.Columns = 400

    _dicom_from("MR_small_RLE.dcm", root / "huge.dcm", claim_huge)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400 * 400 // 4)  # the same lowered limit as for PNG
    with pytest.raises(
        DataError, match=r"row 1, field 'image': .*huge.dcm: refused as a possible decompression"
    ):
        _load(root)
