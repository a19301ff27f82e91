"""`rarl ask` on the tiny model with PNG and DICOM images, and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from rarl.cli import main


def test_ask_png_and_dicom_print_reasoning_and_answer(tmp_path, tiny_model_dir, capsys):
    png = tmp_path / "scan.png"
    Image.new("L", (96, 80), color=40).save(png)
    assert (
        main(
            [
                "ask",
                "--model",
                str(tiny_model_dir),
                "--image",
                str(png),
                "--max-new-tokens",
                "8",
                "--dtype",
                "float32",
                "--device",
                "cpu",
                "Is the lung healthy?",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Reasoning: ") and out[1].startswith("Answer: ") and len(out) == 2

    dcm = get_testdata_file("MR_small.dcm")
    assert (
        main(
            [
                "ask",
                "--model",
                str(tiny_model_dir),
                "--image",
                dcm,
                "--max-new-tokens",
                "8",
                "--json",
                "--dtype",
                "float32",
                "--device",
                "cpu",
                "--choices",
                "yes",
                "no",
                "--",
                "Any lesion?",
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["question"] == "Any lesion?" and record["choices"] == ["yes", "no"]
    assert record["image"] == dcm and record["raw_output"] and record["prompt"] == "reasoning"


def test_ask_errors_are_one_line(tmp_path, tiny_model_dir, capsys):
    assert main(["ask", "--model", str(tiny_model_dir), "--image", str(tmp_path / "none.png"), "q?"]) == 2
    err = capsys.readouterr().err
    assert "none.png: image file not found" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["ask", "--model", str(tiny_model_dir), "--image", str(bad), "q?"]) == 2
    assert "not a readable image" in capsys.readouterr().err
    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    assert main(["ask", "--model", str(tmp_path / "no_model"), "--image", str(png), "q?"]) == 2
    assert "cannot load" in capsys.readouterr().err
    thin = tmp_path / "thin.png"  # Qwen2-VL's processor refuses an aspect ratio over 200
    Image.new("L", (5, 1100)).save(thin)
    assert main(["ask", "--model", str(tiny_model_dir), "--image", str(thin), "--device", "cpu", "q?"]) == 2
    err = capsys.readouterr().err
    assert "thin.png: 5x1100 pixels: aspect ratio 220:1 is over 200:1" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-pixels", "0"], "--max-pixels: must be an integer >= 1 (got 0)"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1 (got 0)"),
        (["--device", "tpu9"], "--device 'tpu9'"),
        pytest.param(
            ["--device", "cuda"],
            "--device cuda: no CUDA GPU is available here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
        ),
    ],
)
def test_ask_checks_its_flags_before_loading_anything(tmp_path, capsys, flags, message):
    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    # --model points nowhere: an error about the flag proves it was checked before any model load.
    code = main(["ask", "--model", str(tmp_path / "no_model"), "--image", str(png), *flags, "q?"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
