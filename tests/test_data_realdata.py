"""Real official benchmark files, when ../shared/realdata/ holds them: every split loads, counts match.

Layout expected (each folder is the unpacked official download; absent folders are skipped, so this file
does nothing on machines without the data and everything where the data appears):

    realdata/vqa_rad/        VQA_RAD Dataset Public.json + VQA_RAD Image Folder/
    realdata/slake/          train.json validate.json test.json + imgs/
    realdata/vqa_med_2019/   ImageClef-2019-VQA-Med-Training/ ...-Validation/ VQAMed2019Test/
    realdata/pathvqa/        pvqa/ (qas/ + images/) or HF parquet files
    realdata/cvbench/        test_2d.parquet test_3d.parquet (or test.jsonl + img/)

The expected counts are the published split sizes; ``None`` means "no published number to check" and the
test still loads every row, checks that images exist and that question types add up.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from rarl.config import DatasetSpec
from rarl.data import load_dataset_spec

REALDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "realdata"

# (folder, source, split, sub-path, expected count)
CASES = [
    ("vqa_rad", "vqa_rad", "train", "", None),
    ("vqa_rad", "vqa_rad", "test", "", 451),
    ("slake", "slake", "train", "", 4919),
    ("slake", "slake", "validation", "", 1053),
    ("slake", "slake", "test", "", 1061),
    ("vqa_med_2019", "vqa_med_2019", "train", "", 12792),
    ("vqa_med_2019", "vqa_med_2019", "validation", "", 2000),
    ("vqa_med_2019", "vqa_med_2019", "test", "", 500),
    ("pathvqa", "pathvqa", "train", "pvqa", 19654),
    ("pathvqa", "pathvqa", "validation", "pvqa", 6259),
    ("pathvqa", "pathvqa", "test", "pvqa", 6719),
    ("cvbench", "cvbench", "test", "", 2638),
]


def _present(folder: str, sub: str) -> Path | None:
    path = REALDATA / folder / sub if sub else REALDATA / folder
    if path.exists():
        return path
    if sub and (REALDATA / folder).exists():  # e.g. PathVQA as parquet instead of pvqa/
        return REALDATA / folder
    return None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("folder", "source", "split", "sub", "expected"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES]
)
def test_real_benchmark_split_loads_completely(folder, source, split, sub, expected):
    path = _present(folder, sub)
    if path is None:
        pytest.skip(f"{REALDATA / folder} not present")
    samples = load_dataset_spec(DatasetSpec(source=source, path=str(path), split=split))
    assert samples, f"{folder}/{split}: no samples"
    if expected is not None:
        assert len(samples) == expected, f"{folder}/{split}: {len(samples)} samples, published {expected}"
    counts = Counter(s.question_type for s in samples)
    assert sum(counts.values()) == len(samples)
    assert len({s.id for s in samples}) == len(samples)
    for sample in samples:
        assert sample.question.strip() and sample.answer.strip()
        if isinstance(sample.image, str):
            assert Path(sample.image).is_file()
    if source == "cvbench":
        assert set(Counter(s.extra["task"] for s in samples)) <= {"Count", "Relation", "Depth", "Distance"}
        assert counts == {"choice": len(samples)}
    elif source in ("vqa_rad", "slake", "pathvqa", "vqa_med_2019"):
        assert counts["closed"] > 0 and counts["open"] > 0


def test_realdata_layout_is_documented():
    """Guards the list above against typos: every case names a known source with a split it supports."""
    from rarl.data.loaders import LOADERS

    assert {case[1] for case in CASES} <= set(LOADERS)
