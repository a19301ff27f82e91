"""`rarl data audit`: counts, duplicates, leakage by image content and the token budget per split.

Oracles: a hand-built dataset whose leaks are planted (a renamed copy of a train image in test, one repeated
triplet), and on the real files the figures of ../shared/realdata/SOURCES.md (202 shared VQA-RAD images and
one shared triplet; SLAKE's 130/142/26 images shared across languages).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from rarl.cli import main
from tests.conftest import REALDATA


def _write_set(root: Path) -> None:
    """train: 3 rows on 2 images (one duplicated); test: a renamed byte-copy of a train image + one new."""
    root.mkdir(parents=True)
    Image.new("RGB", (56, 84), (200, 10, 10)).save(root / "a.png")
    Image.new("RGB", (300, 200), (10, 200, 10)).save(root / "b.png")
    Image.new("RGB", (64, 64), (10, 10, 200)).save(root / "c.png")
    shutil.copy(root / "a.png", root / "a_renamed.png")
    train = [
        {"id": "t1", "image": "a.png", "question": "Is there a lesion?", "answer": "yes"},
        {"id": "t2", "image": "a.png", "question": "Is there a lesion?", "answer": "Yes"},
        {"id": "t3", "image": "b.png", "question": "Which organ?", "answer": "liver"},
    ]
    test = [
        {"id": "e1", "image": "a_renamed.png", "question": "Is there a lesion?", "answer": "yes"},
        {"id": "e2", "image": "c.png", "question": "Which organ?", "answer": "spleen"},
    ]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))


def test_audit_finds_planted_leaks_and_duplicates(tmp_path, capsys):
    _write_set(tmp_path / "set")
    out = tmp_path / "audit.json"
    assert (
        main(["data", "audit", str(tmp_path / "set"), "--source", "reasoning_jsonl", "--json", str(out)]) == 0
    )
    report = json.loads(out.read_text())
    splits = {row["split"]: row for row in report["splits"] if not row["error"]}
    assert splits["train"]["rows"] == 3 and splits["train"]["duplicate_rows"] == 1  # "yes" == "Yes"
    assert splits["train"]["images"] == 2 and splits["train"]["yes_no_share"] == pytest.approx(
        2 / 3, abs=1e-4
    )
    assert splits["train"]["top_answers"][0] == ["yes", 2]
    assert splits["train"]["image_width"] == {"min": 56, "median": 178.0, "max": 300}
    [pair] = [
        p for p in report["leakage"] if {p["a"], p["b"]} == {"reasoning_jsonl/train", "reasoning_jsonl/test"}
    ]
    assert pair["shared_images"] == 1  # a_renamed.png has the same bytes as a.png: found by content
    assert pair["shared_triplets"] == 1
    assert "shared between splits" in capsys.readouterr().out


def test_audit_counts_image_tokens_under_max_pixels(tmp_path):
    """56x84 → one token per 28x28 block = 2*3 = 6; 300x200 under 112*112 px is capped first (see budget)."""
    from rarl.data.budget import image_tokens

    assert image_tokens(56, 84, 3136, 448 * 448) == 6
    assert image_tokens(448, 448, 3136, 448 * 448) == 256
    capped = image_tokens(4000, 3000, 3136, 448 * 448)
    assert capped <= 256 and capped >= 240
    _write_set(tmp_path / "set")
    out = tmp_path / "audit.json"
    main(["data", "audit", str(tmp_path / "set"), "--source", "reasoning_jsonl", "--json", str(out)])
    train = next(r for r in json.loads(out.read_text())["splits"] if r["split"] == "train")
    assert train["image_tokens"]["min"] == 6


def test_audit_real_vqa_rad_reports_202_shared_images_and_one_triplet(tmp_path):
    if not (REALDATA / "vqa_rad").exists():
        pytest.skip("realdata/vqa_rad not present")
    out = tmp_path / "audit.json"
    assert main(["data", "audit", str(REALDATA / "vqa_rad"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    [pair] = report["leakage"]
    assert (pair["shared_images"], pair["images_a"], pair["images_b"]) == (202, 313, 203)
    assert pair["shared_triplets"] == 1
    train = next(r for r in report["splits"] if r["split"] == "train")
    assert train["duplicate_rows"] == 3 and train["rows"] == 1797


def test_audit_real_slake_reports_cross_language_image_sharing(tmp_path, capsys):
    if not (REALDATA / "slake").exists():
        pytest.skip("realdata/slake not present")
    out = tmp_path / "audit.json"
    assert main(["data", "audit", str(REALDATA / "slake"), "--split", "train", "--split", "test",
                 "--json", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    overlaps = {(p["a"], p["b"]): p for p in report["slake_languages"]["slake"]}
    assert overlaps[("train", "validation")]["shared_images_all_languages"] == 130
    assert overlaps[("train", "test")]["shared_images_all_languages"] == 142
    assert overlaps[("validation", "test")]["shared_images_all_languages"] == 26
    assert overlaps[("train", "test")]["shared_images_within_language"] == {"en": 0, "zh": 0}
    assert [p["shared_images"] for p in report["leakage"]] == [0]  # English train vs test: disjoint
    assert "mixing languages leaks test images into training" in " ".join(capsys.readouterr().out.split())
