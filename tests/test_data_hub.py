"""Hub datasets as named sources, offline: local copies in hub layout, loaded by ``datasets.load_dataset``.

The copies have the column names and features of the dataset cards (flaviagiammarino/vqa-rad and
flaviagiammarino/path-vqa: ``image`` (Image), ``question``, ``answer`` (string); nyu-visionx/CV-Bench:
``idx``, ``type``, ``task``, ``image``, ``question``, ``choices``, ``answer`` "(X)", ``prompt``, ``filename``,
``source``; BoKelvin/SLAKE: the official JSON files with ``validation.json`` and ``imgs.zip``). No config
names a column: the source knows its hub schema.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from rarl.config import DatasetSpec
from rarl.errors import UserError
from rarl.tasks.loading import load_dataset_spec

FIXTURES = Path(__file__).parent / "fixtures" / "data"
CARD = """---
dataset_info:
  features:
  - name: image
    dtype: image
  - name: question
    dtype: string
  - name: answer
    dtype: string
configs:
- config_name: default
  data_files:
{files}
---
# local copy in hub layout (test fixture)
"""


def _image(colour: tuple[int, int, int]):
    return Image.new("RGB", (64, 48), colour)


def _vqa_copy(root: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """``data/<split>-00000-of-00001.parquet`` shards with the cards' features, plus the card."""
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string")}
    )
    (root / "data").mkdir(parents=True)
    files = []
    for split, rows in splits.items():
        table = {
            "image": [_image((40 * i % 255, 90, 160)) for i in range(len(rows))],
            "question": [q for q, _ in rows],
            "answer": [a for _, a in rows],
        }
        datasets.Dataset.from_dict(table, features=features).to_parquet(
            root / "data" / f"{split}-00000-of-00001.parquet"
        )
        files.append(f"  - split: {split}\n    path: data/{split}-*")
    (root / "README.md").write_text(CARD.format(files="\n".join(files)))
    return root


def test_vqa_rad_hub_copy_needs_no_column_map(tmp_path):
    root = _vqa_copy(
        tmp_path / "vqa-rad",
        {
            "train": [("is there a fracture?", "no"), ("where is the lesion?", "left lung")],
            "test": [("is it ct?", "yes")],
        },
    )
    train = load_dataset_spec(DatasetSpec(source="vqa_rad", path=str(root), split="train"))
    assert [(s.question, s.answer, s.question_type) for s in train] == [
        ("is there a fracture?", "no", "closed"),
        ("where is the lesion?", "left lung", "open"),
    ]
    assert isinstance(train[0].image, Image.Image) and train[0].image.size == (64, 48)
    [test] = load_dataset_spec(DatasetSpec(source="vqa_rad", path=str(root), split="test"))
    assert test.dataset == "vqa_rad" and test.question_type == "closed"


def test_pathvqa_hub_copy_with_validation_alias(tmp_path):
    root = _vqa_copy(tmp_path / "path-vqa", {"validation": [("what is present?", "necrosis")]})
    [sample] = load_dataset_spec(DatasetSpec(source="pathvqa", path=str(root), split="val"))
    assert (sample.answer, sample.question_type) == ("necrosis", "open")


def _cvbench_copy(root: Path) -> Path:
    import datasets

    root.mkdir(parents=True)
    rows = {
        "idx": [0, 1],
        "type": ["2D", "3D"],
        "task": ["Count", "Depth"],
        "image": [_image((10, 10, 10)), _image((200, 200, 200))],
        "question": ["How many chairs are in the image?", "Which is closer to the camera?"],
        "choices": [["1", "2", "3"], ["the lamp", "the sofa"]],
        "answer": ["(B)", "(A)"],
        "prompt": [
            "How many chairs are in the image? Select from the following choices.\n(A) 1\n(B) 2\n(C) 3",
            "Which is closer to the camera? Select from the following choices.\n(A) the lamp\n(B) the sofa",
        ],
        "filename": ["img/2D/count/ade20k_1.png", "img/3D/depth/omni3d_1.png"],
        "source": ["ADE20K", "Omni3D"],
    }
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).to_parquet(root / "test.parquet")
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: test\n    path: test.parquet\n---\n"
    )
    return root


def test_cvbench_by_hub_id_through_source_hf(tmp_path, monkeypatch):
    """``{source: hf, path: nyu-visionx/CV-Bench}``: the id is known, so the cvbench schema applies."""
    import datasets

    import rarl.data.hub as hub

    copy = _cvbench_copy(tmp_path / "CV-Bench")
    asked = []

    def fake_hub(path: str, split: str, names: tuple[str, ...]):  # the hub, served from the local copy
        asked.append(path)
        return datasets.load_dataset(str(copy), split="test")

    monkeypatch.setattr(hub, "load_split", fake_hub)
    samples = load_dataset_spec(DatasetSpec(source="hf", path="nyu-visionx/CV-Bench", split="test"))
    assert asked == ["nyu-visionx/CV-Bench"]
    assert [(s.answer, s.choices, s.question_type, s.extra["task"]) for s in samples] == [
        ("(B)", ["1", "2", "3"], "choice", "Count"),
        ("(A)", ["the lamp", "the sofa"], "choice", "Depth"),
    ]
    local = load_dataset_spec(DatasetSpec(source="cvbench", path=str(copy), split="test", tasks=["Depth"]))
    assert [s.id for s in local] == ["1"]


def test_slake_hub_layout_validation_json_and_zipped_images(tmp_path):
    root = tmp_path / "SLAKE"
    shutil.copytree(FIXTURES / "slake", root)
    if (root / "validate.json").exists():
        (root / "validate.json").rename(root / "validation.json")
    with zipfile.ZipFile(root / "imgs.zip", "w") as archive:
        for file in (root / "imgs").rglob("*"):
            archive.write(file, file.relative_to(root))
    shutil.rmtree(root / "imgs")
    (root / "README.md").write_text("---\nconfigs:\n- config_name: default\n---\n")  # a clone of the repo
    expected = load_dataset_spec(DatasetSpec(source="slake", path=str(FIXTURES / "slake"), split="train"))
    samples = load_dataset_spec(DatasetSpec(source="slake", path=str(root), split="train"))
    assert [(s.question, s.answer) for s in samples] == [(s.question, s.answer) for s in expected]
    assert all(Path(s.image).is_file() for s in samples) and (root / "imgs").is_dir()


def test_missing_local_looking_path_is_not_found_at_once(tmp_path, monkeypatch, capsys):
    """``rarl data inspect data/Slake1.0`` with ./data present but no Slake1.0: no hub call, one line."""
    import rarl.data.hub as hub
    from rarl.cli import main

    def no_hub(*args, **kwargs):
        raise AssertionError("a local-looking path must not reach the hub")

    monkeypatch.setattr(hub, "check_hub_id", no_hub)
    monkeypatch.setattr(hub, "load_split", no_hub)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    started = time.monotonic()
    assert main(["data", "inspect", "data/Slake1.0"]) == 2
    assert main(["data", "inspect", "data/Slake1.0", "--source", "slake"]) == 2
    assert time.monotonic() - started < 5
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 2 and all("data/Slake1.0: " in e and "not found" in e for e in errors)
    with pytest.raises(UserError, match="not found"):
        load_dataset_spec(DatasetSpec(source="vqa_rad", path="./vqa_rad_copy", split="train"))


def test_hub_id_check_is_one_quick_request(monkeypatch):
    """A hub id that does not exist: one lookup, a one-line 'not found' (no minute of retries)."""
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    import rarl.data.hub as hub

    calls = []

    def dataset_info(self, repo_id, **kwargs):
        calls.append(repo_id)
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)  # as raised for a 404
        Exception.__init__(error, f"404 Client Error: Repository Not Found for {repo_id}")
        raise error

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    with pytest.raises(UserError, match=r"^someone/no-such-set: not found \(no such local path, and no such"):
        hub.check_hub_id("someone/no-such-set")
    assert calls == ["someone/no-such-set"]


def test_registry_is_the_one_list():
    from typing import get_args

    from rarl.commands import data as data_command
    from rarl.config import Source
    from rarl.schema.sources import DEFAULT_SPLITS, SOURCE_NAMES
    from rarl.tasks import HUB_DATASETS, TASKS
    from rarl.tasks.loading import GENERIC_LOADERS

    loadable = set(TASKS) | set(GENERIC_LOADERS)
    assert loadable == set(SOURCE_NAMES) == set(get_args(Source)) == set(DEFAULT_SPLITS)
    assert not set(TASKS) & set(GENERIC_LOADERS)
    assert set(HUB_DATASETS.values()) <= set(TASKS)
    assert data_command.SOURCE_NAMES is SOURCE_NAMES
    assert json.dumps(sorted(HUB_DATASETS)) == json.dumps(sorted(k.lower() for k in HUB_DATASETS))


def test_inspect_unreachable_hub_asks_once_and_says_not_found(tmp_path, monkeypatch, capsys):
    """No ./data folder either: the target could be a hub id, so the hub is asked once (not per split)."""
    import huggingface_hub

    from rarl.cli import main

    calls = []

    def unreachable(self, repo_id, **kwargs):
        calls.append(repo_id)
        raise ConnectionError("no route to host")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    monkeypatch.chdir(tmp_path)
    assert main(["data", "inspect", "data/Slake1.0"]) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error.startswith("rarl data: error: data/Slake1.0: not found (no such local path;")
    assert calls == ["data/Slake1.0"]
