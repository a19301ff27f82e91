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
