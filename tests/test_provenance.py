"""Item fingerprints and settings comparison: what counts as 'the same run'."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PIL import Image

from rarl.config import RunConfig
from rarl.errors import UserError
from rarl.provenance import (
    check_same_settings,
    differences,
    eval_settings,
    item_fingerprint,
    read_provenance,
    train_settings,
    write_provenance,
)
from rarl.schema.sample import Sample


def sample(**changes):
    base = Sample(
        id="1",
        image=Image.new("RGB", (8, 8), "red"),
        question="Is it red?",
        answer="yes",
        question_type="closed",
        reasoning="it is red",
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    "change",
    [
        {"question": "Is it blue?"},
        {"answer": "no"},
        {"reasoning": "it is not"},
        {"question_type": "open"},
        {"choices": ["yes", "no"]},
        {"image": Image.new("RGB", (8, 8), "blue")},
        {"image": Image.new("RGB", (8, 9), "red")},
    ],
)
def test_every_scored_part_of_an_item_changes_its_fingerprint(change):
    assert item_fingerprint(sample(**change)) != item_fingerprint(sample())


def test_fingerprint_ignores_what_does_not_affect_the_prediction_or_its_score():
    # a fresh image object with the same pixels, another id, dataset label or extra field
    same = sample(image=Image.new("RGB", (8, 8), "red"), id="other", dataset="x", extra={"k": 1})
    assert item_fingerprint(same) == item_fingerprint(sample())


def test_image_files_are_fingerprinted_by_content(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(path)
    before = item_fingerprint(sample(image=str(path)))
    assert item_fingerprint(sample(image=str(path))) == before
    Image.new("RGB", (8, 8), "green").save(path)
    assert item_fingerprint(sample(image=str(path))) != before


def test_cosmetic_train_settings_may_change_hyper_parameters_may_not():
    base = RunConfig()
    cosmetic = RunConfig()
    cosmetic.train.grpo |= {
        "output_dir": "elsewhere",
        "logging_steps": 7,
        "save_steps": 3,
        "max_steps": 99,  # extending a run
        "report_to": [],
    }
    cosmetic.model.gradient_checkpointing = True
    assert differences(train_settings(base), train_settings(cosmetic)) == []
    changed = RunConfig()
    changed.train.grpo["learning_rate"] = 0.5
    changed.lora.r = 4
    changed.reward.weights = [1.0, 1.0, 2.0, 1.0]
    assert differences(train_settings(base), train_settings(changed)) == [
        "lora.r: 8 -> 4",
        "reward.weights: [1.0, 1.0, 1.0, 1.0] -> [1.0, 1.0, 2.0, 1.0]",
        "train.grpo.learning_rate: 1e-05 -> 0.5",
    ]


def test_eval_settings_exclude_batch_size_and_include_decoding():
    base, other = RunConfig(), RunConfig()
    other.eval.batch_size = 1
    other.eval.bertscore = False
    assert differences(eval_settings(base), eval_settings(other)) == []
    other.eval.do_sample = True
    assert differences(eval_settings(base), eval_settings(other)) == ["eval.do_sample: false -> true"]


def test_recorded_settings_read_back_equal_to_current_ones(tmp_path):
    """Values JSON turns into other types (tuples, enums) must not look like changes."""
    settings = {"a.tuple": (1, 2), "a.float": 1e-5, "a.none": None}
    write_provenance(tmp_path, "train", settings)
    recorded = read_provenance(tmp_path)
    assert recorded is not None and recorded["kind"] == "train"
    check_same_settings(recorded["settings"], settings, what="x", fresh="y")
    expected = r"x was produced with other settings \(a\.float: 1e-05 -> 0\.001\); y$"
    with pytest.raises(UserError, match=expected):
        check_same_settings(recorded["settings"], {**settings, "a.float": 1e-3}, what="x", fresh="y")
    (tmp_path / "provenance.json").write_text(json.dumps({"settings": 3}))
    with pytest.raises(UserError, match="unreadable provenance"):
        read_provenance(tmp_path)
