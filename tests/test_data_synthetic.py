"""Synthetic data: determinism, balance, answers visible in the pixels, and the JSONL round trip."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from rarl.config import DatasetSpec
from rarl.data.synthetic import (
    CHANCE_LEVEL,
    KINDS,
    MODALITIES,
    generate_samples,
    render_image,
    synthetic_texts,
    write_reasoning_jsonl,
)
from rarl.tasks.loading import load_dataset_spec


def test_deterministic_per_seed_and_prefix_stable():
    a = generate_samples(12, seed=3, split="train")
    b = generate_samples(20, seed=3, split="train")
    for x, y in zip(a, b[:12], strict=True):
        assert (x.id, x.question, x.answer, x.reasoning) == (y.id, y.question, y.answer, y.reasoning)
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))
    other_seed = generate_samples(12, seed=4, split="train")
    other_split = generate_samples(12, seed=3, split="test")
    assert any(
        not np.array_equal(np.asarray(x.image), np.asarray(y.image))
        for x, y in zip(a, other_seed, strict=True)
    )
    assert all(
        not np.array_equal(np.asarray(x.image), np.asarray(y.image))
        for x, y in zip(a, other_split, strict=True)
    )


def test_balanced_answers_and_chance_level():
    samples = generate_samples(96, seed=0)
    kinds = Counter(s.extra["kind"] for s in samples)
    assert set(kinds.values()) == {24}
    for kind, (qtype, answers) in KINDS.items():
        got = Counter(s.answer for s in samples if s.extra["kind"] == kind)
        assert set(got) == set(answers)
        assert max(got.values()) - min(got.values()) <= 1
        assert all(s.question_type == qtype for s in samples if s.extra["kind"] == kind)
    # always answering the majority answer of each kind scores the chance level
    majority = sum(
        Counter(s.answer for s in samples if s.extra["kind"] == k).most_common(1)[0][1] for k in KINDS
    )
    assert majority / len(samples) == pytest.approx(CHANCE_LEVEL["overall"], abs=0.02)
    assert CHANCE_LEVEL["overall"] == pytest.approx(5 / 12)


def test_answers_consistent_with_image_content():
    """The opacity is bright where the answer says it is; the modality is readable from colour."""
    for sample in generate_samples(60, seed=1):
        pixels = np.asarray(sample.image).astype(float)
        assert pixels.shape == (112, 112, 3)
        grey = pixels.max(axis=2)
        left_peak = np.percentile(grey[20:92, 15:50], 99.5)
        right_peak = np.percentile(grey[20:92, 62:97], 99.5)
        side = sample.extra["opacity_side"]
        if side == "left":
            assert left_peak > right_peak + 40
        elif side == "right":
            assert right_peak > left_peak + 40
        else:
            assert abs(left_peak - right_peak) < 40
        kind = sample.extra["kind"]
        if kind == "opacity_left":
            assert sample.answer == ("yes" if side == "left" else "no")
        if kind == "opacity_side":
            assert sample.answer == side
        red, green, blue = pixels[..., 0].mean(), pixels[..., 1].mean(), pixels[..., 2].mean()
        expected = {"x-ray": abs(red - blue) < 3, "ct": blue > red + 10, "mri": red > blue + 10}
        assert expected[sample.modality], (sample.modality, red, green, blue)
        if kind == "modality":
            assert sample.answer == sample.modality
        assert sample.reasoning and (
            side in sample.reasoning or "no bright" in sample.reasoning or kind == "modality"
        )


def test_render_sizes_and_texts():
    rng = np.random.default_rng(0)
    assert render_image("mri", "left", rng, size=224).size == (224, 224)
    texts = synthetic_texts()
    assert any("opacity" in t for t in texts) and all(m in " ".join(texts) for m in MODALITIES)


def test_write_and_read_back_reasoning_jsonl(tmp_path, caplog):
    samples = generate_samples(8, seed=2, split="train") + generate_samples(4, seed=2, split="test")
    written = write_reasoning_jsonl(samples, tmp_path)
    assert set(written) == {"train", "test"}
    with caplog.at_level(logging.INFO, logger="rarl"):
        back = load_dataset_spec(DatasetSpec(source="reasoning_jsonl", path=str(tmp_path), split="train"))
    assert [s.id for s in back] == [s.id for s in samples[:8]]
    for original, loaded in zip(samples[:8], back, strict=True):
        assert (loaded.question, loaded.answer, loaded.reasoning, loaded.question_type, loaded.modality) == (
            original.question,
            original.answer,
            original.reasoning,
            original.question_type,
            original.modality,
        )
        assert np.array_equal(
            np.asarray(original.image), np.asarray(loaded.image_path and _open(loaded.image))
        )
    assert "8 samples" in caplog.text
    test = load_dataset_spec(DatasetSpec(source="reasoning_jsonl", path=str(tmp_path), split="test"))
    assert len(test) == 4


def _open(path):
    from rarl.data.images import load_image

    return load_image(path)


def test_load_dataset_spec_synthetic_limit_is_seeded_subsample(caplog):
    with caplog.at_level(logging.INFO, logger="rarl"):
        a = load_dataset_spec(DatasetSpec(num_samples=40, limit=10, seed=5, name="demo"))
    b = load_dataset_spec(DatasetSpec(num_samples=40, limit=10, seed=5, name="demo"))
    assert len(a) == 10 and [s.id for s in a] == [s.id for s in b]
    assert all(s.dataset == "demo" for s in a)
    assert "subsample" in caplog.text and "10 out of 40" in caplog.text
    full = load_dataset_spec(DatasetSpec(num_samples=40, seed=5))
    assert {s.id for s in a} < {s.id for s in full}


def test_answers_linearly_decodable_from_vision_patches():
    """Learnability: a ridge probe on 14x14-pixel patch means (Qwen2-VL's patch size) answers held-out
    samples far above chance, so a tiny VLM's vision tower has what it needs."""

    def features(sample):
        pixels = np.asarray(sample.image, dtype=float) / 255.0
        return np.concatenate([pixels.reshape(8, 14, 8, 14, 3).mean(axis=(1, 3)).ravel(), [1.0]])

    train, test = generate_samples(240, seed=0, split="train"), generate_samples(120, seed=0, split="test")
    correct = 0
    for kind in KINDS:
        x_train = np.array([features(s) for s in train if s.extra["kind"] == kind])
        y_train = [s.answer for s in train if s.extra["kind"] == kind]
        labels = sorted(set(y_train))
        targets = np.array([[y == label for label in labels] for y in y_train], dtype=float)
        weights = np.linalg.solve(x_train.T @ x_train + 0.1 * np.eye(x_train.shape[1]), x_train.T @ targets)
        held_out = [s for s in test if s.extra["kind"] == kind]
        scores = np.array([features(s) for s in held_out]) @ weights
        correct += sum(labels[i] == s.answer for i, s in zip(scores.argmax(axis=1), held_out, strict=True))
    accuracy = correct / len(test)
    assert accuracy > 0.9 > CHANCE_LEVEL["overall"] + 0.4, accuracy


def test_random_answers_keep_the_images_and_carry_no_information_about_them():
    """The format warm-up's data: same images as the real set, answers independent of them."""
    from rarl.data.synthetic import NEUTRAL_REASONING, chance_level

    real = generate_samples(480, seed=2, split="train")
    fake = generate_samples(480, seed=2, split="train", random_answers=True)
    for r, f in zip(real, fake, strict=True):
        assert np.array_equal(np.asarray(r.image), np.asarray(f.image)) and r.question == f.question
        assert f.answer in KINDS[f.extra["kind"]][1]  # a valid answer word of the kind ...
        assert f.reasoning == NEUTRAL_REASONING  # ... after a think that says nothing about the image
    # ... and the answer agrees with the image's true answer only as often as guessing does: in every
    # (kind, true answer) cell each shown answer equally often, to within one (no chance correlation
    # for a model to memorise, as 480 independent draws would leave)
    cells = Counter((r.extra["kind"], r.answer, f.answer) for r, f in zip(real, fake, strict=True))
    for kind, (_, answers) in KINDS.items():
        for true in answers:
            counts = [cells[(kind, true, shown)] for shown in answers]
            assert max(counts) - min(counts) <= 1, (kind, true, counts)
    agreement = sum(r.answer == f.answer for r, f in zip(real, fake, strict=True)) / len(real)
    assert agreement == pytest.approx(chance_level(), abs=0.01)
    assert chance_level() == pytest.approx(CHANCE_LEVEL["overall"])
    for kind, (_, answers) in KINDS.items():  # every answer word is shown
        assert {f.answer for f in fake if f.extra["kind"] == kind} == set(answers)


def test_caption_and_body_shape_kinds_follow_the_image():
    """``colour`` names the tint a modality is drawn in; ``body_shape`` the outline (square films, round
    cross-sections); ``think: neutral`` keeps the true answers behind the fixed think."""
    from rarl.data.synthetic import NEUTRAL_REASONING

    tint = {"x-ray": "grey", "ct": "cyan", "mri": "orange"}
    shape = {"x-ray": "square", "ct": "round", "mri": "round"}
    samples = generate_samples(60, seed=3, kinds=["colour", "body_shape"], think="neutral")
    for sample in samples:
        expected = (tint if sample.extra["kind"] == "colour" else shape)[sample.modality]
        assert sample.answer == expected and sample.reasoning == NEUTRAL_REASONING
        pixels = np.asarray(sample.image, dtype=float).reshape(-1, 3).mean(0)  # the tint, measured
        measured = "grey" if np.ptp(pixels) < 5 else ("cyan" if pixels[0] < pixels[2] else "orange")
        assert measured == tint[sample.modality], (pixels, sample.modality)
    assert {s.answer for s in samples} == {"grey", "cyan", "orange", "square", "round"}


def test_reasoning_fraction_paraphrase_and_extra_kinds():
    from rarl.data.synthetic import PARAPHRASES, QUESTIONS

    half = generate_samples(400, seed=0, reasoning_fraction=0.5)
    annotated = sum(s.reasoning is not None for s in half)
    assert 160 <= annotated <= 240
    assert generate_samples(8, seed=0, reasoning_fraction=0.0)[0].reasoning is None
    base = generate_samples(8, seed=0, split="test")
    shifted = generate_samples(8, seed=0, split="test", paraphrase=True)
    for a, b in zip(base, shifted, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.answer == b.answer
        assert a.question == QUESTIONS[a.extra["kind"]] and b.question == PARAPHRASES[a.extra["kind"]]
        assert a.question != b.question
    present = generate_samples(40, seed=0, kinds=["opacity_present"])
    assert {s.extra["kind"] for s in present} == {"opacity_present"}
    for sample in present:  # the answer says whether the image has an opacity at all
        assert sample.answer == ("no" if sample.extra["opacity_side"] == "none" else "yes")
    assert Counter(s.answer for s in present) == {"yes": 20, "no": 20}


def test_synthetic_options_reach_the_loader_and_a_bad_kind_is_one_line():
    from rarl.config import load_config
    from rarl.errors import UserError

    config = load_config(
        None,
        [
            "data.train.0.kinds=[opacity_present]",
            "data.train.0.num_samples=6",
            "data.train.0.random_answers=true",
        ],
    )
    samples = load_dataset_spec(config.data.train[0])
    expected = generate_samples(6, seed=0, kinds=["opacity_present"], random_answers=True)
    assert [s.answer for s in samples] == [s.answer for s in expected]
    with pytest.raises(UserError, match="unknown kind"):
        load_dataset_spec(DatasetSpec(kinds=["texture"]))
    with pytest.raises(UserError, match="think: unknown 'thoughtful'; valid options: reference, neutral"):
        load_dataset_spec(DatasetSpec(think="thoughtful"))
    with pytest.raises(UserError, match="reasoning_fraction"):
        load_config(None, ["data.train.0.reasoning_fraction=1.5"])
