"""`rarl data inspect` and `rarl data synthetic` through the real CLI entry point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rarl.cli import main
from rarl.config import DatasetSpec
from rarl.data.loaders.common import split_files
from rarl.tasks.loading import guess_source, load_dataset_spec

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def row_counts(output: str, dataset: str, split: str) -> list[str]:
    """The numeric cells of one table row (samples, closed, open, choice, reasoning)."""
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        if len(cells) >= 9 and cells[1] == dataset and cells[3] == split:
            return cells[4:9]
    raise AssertionError(f"no row for {dataset}/{split} in:\n{output}")


def test_inspect_synthetic_counts_and_rendered_prompts(capsys):
    assert (
        main(["data", "inspect", "synthetic", "--num-samples", "12", "--show", "1", "--split", "train"]) == 0
    )
    out = capsys.readouterr().out
    assert row_counts(out, "synthetic", "train") == ["12", "6", "6", "0", "12"]
    assert "[system] A conversation between a User and a Medical Assistant." in out
    assert "[user] <image> Is there an opacity in the left lung?" in out
    assert "reference answer: yes" in out


def test_inspect_guesses_official_layouts(capsys):
    assert main(["data", "inspect", str(FIXTURES / "slake"), "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert row_counts(out, "slake", "train") == ["3", "1", "2", "0", "0"]
    assert row_counts(out, "slake", "validation") == ["1", "1", "0", "0", "0"]
    assert row_counts(out, "slake", "test") == ["3", "1", "2", "0", "0"]
    expected = {
        "vqa_rad": "vqa_rad",
        "vqa_med_2019": "vqa_med_2019",
        "pathvqa/pvqa": "pathvqa",
        "cvbench/parquet": "cvbench",
        "cvbench/jsonl": "cvbench",
        "pathvqa_parquet": "parquet",
        "slake": "slake",
    }
    for folder, source in expected.items():
        assert guess_source(str(FIXTURES / folder)) == source


def test_inspect_choice_prompt_lists_options(capsys):
    assert (
        main(
            [
                "data",
                "inspect",
                str(FIXTURES / "cvbench" / "parquet"),
                "--show",
                "1",
                "--prompt",
                "non_reasoning",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "How many chairs are in the image? Options: (A) 3 (B) 2 (C) 0 (D) 1" in out
    assert "The Assistant provides the answer to the User." in out
    assert "reference answer: (B)" in out


def test_inspect_config_uses_training_templates_and_eval_prompt(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        "data:\n"
        "  train:\n"
        "    - {source: synthetic, num_samples: 6, name: synth}\n"
        "  eval:\n"
        f"    - {{source: vqa_rad, path: '{FIXTURES / 'vqa_rad'}', split: test, name: rad}}\n"
        "  prompt_diversity: false\n"
        "  single_template: short\n"
        "eval:\n"
        "  prompt: non_reasoning\n"
    )
    assert main(["data", "inspect", str(config), "--show", "1"]) == 0
    out = capsys.readouterr().out
    assert row_counts(out, "synth", "train") == ["6", "4", "2", "0", "6"]  # kinds take turns: c c o o c c
    assert row_counts(out, "rad", "test") == ["3", "1", "2", "0", "0"]
    assert "Provide your thinking within <think> </think> tags and a concise factual answer" in out  # short
    assert "The Assistant provides the answer to the User." in out  # non_reasoning eval prompt
    assert main(["data", "inspect", str(config), "data.train.0.num_samples=4", "--show", "0"]) == 0
    assert row_counts(capsys.readouterr().out, "synth", "train")[0] == "4"


def test_inspect_with_chat_template_of_tiny_processor(tiny_model_dir, capsys):
    assert main(["data", "inspect", "synthetic", "--num-samples", "2", "--split", "test", "--processor",
                 str(tiny_model_dir), "--show", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "<|im_start|>user" in out and "<|vision_start|><|image_pad|><|vision_end|>" in out


def test_inspect_errors_are_one_line(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["data", "inspect", str(tmp_path / "notes.txt")]) == 2
    assert "pass --source" in capsys.readouterr().err
    bad = FIXTURES / "slake"
    assert main(["data", "inspect", str(bad), "--split", "nope"]) == 2
    assert "no nope.json" in capsys.readouterr().err


def test_data_synthetic_writes_readable_jsonl(tmp_path, capsys):
    out_dir = tmp_path / "synth"
    assert main(["data", "synthetic", str(out_dir), "--num-samples", "5"]) == 0
    assert "chance level 0.417" in capsys.readouterr().out
    train = load_dataset_spec(DatasetSpec(source="reasoning_jsonl", path=str(out_dir), split="train"))
    test = load_dataset_spec(DatasetSpec(source="reasoning_jsonl", path=str(out_dir), split="test"))
    assert len(train) == len(test) == 5 and all(Path(s.image).is_file() for s in train + test)
    assert all(s.reasoning for s in train)


def test_split_files_matches_aliases_once(tmp_path):
    for name in ("validation-00000-of-00001.parquet", "val.parquet", "train-0.parquet", "trainer.parquet"):
        (tmp_path / name).touch()
    assert [p.name for p in split_files(tmp_path, "validation", ".parquet")] == [
        "val.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert [p.name for p in split_files(tmp_path, "train", ".parquet")] == ["train-0.parquet"]


@pytest.mark.parametrize("split", ["val", "validation"])
def test_parquet_folder_validation_split_loads_each_file_once(split):
    samples = load_dataset_spec(
        DatasetSpec(source="parquet", path=str(FIXTURES / "pathvqa_parquet"), split=split)
    )
    assert [s.answer for s in samples] == ["granuloma"]


def test_inspect_parquet_with_column_map_and_skip_bad(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = (FIXTURES / "slake" / "imgs" / "xmlab1" / "source.jpg").read_bytes()
    table = pa.table(
        {
            "img": [{"bytes": image, "path": None}] * 3,
            "q": ["Is it normal?", "Which organ?", "Empty answer?"],
            "a": ["yes", "liver", ""],
        }
    )
    pq.write_table(table, tmp_path / "train.parquet")
    args = ["data", "inspect", str(tmp_path / "train.parquet"), "--split", "train", "--show", "0"]
    maps = ["--column-map", "img=image", "--column-map", "q=question", "--column-map", "a=answer"]
    assert main([*args, *maps]) == 2
    assert "row 3, field 'a': is empty" in capsys.readouterr().err
    assert main([*args, *maps, "--skip-bad"]) == 0
    assert row_counts(capsys.readouterr().out, "parquet", "train") == ["2", "1", "1", "0", "0"]
    assert main([*args, "--column-map", "img"]) == 2
    assert "must look like SOURCE_COLUMN=field" in capsys.readouterr().err
