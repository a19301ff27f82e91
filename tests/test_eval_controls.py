"""Image-dependence controls: `rarl eval --image-control blank|shuffled` and the report's control table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from test_eval_served import decoded_image, served, write_config  # noqa: F401  (served: a fixture)

from rarl.cli import main
from rarl.config import load_config
from rarl.data.synthetic import generate_samples
from rarl.errors import UserError
from rarl.eval.controls import control_image_fn, derangement
from rarl.eval.harness import run_evaluation
from rarl.prompts import REASONING_FORMAT_HINT
from rarl.schema.sample import Sample


def _samples(images):
    return [
        Sample(id=str(i), dataset="d", split="test", question="q", answer="a", question_type="open", image=im)
        for i, im in enumerate(images)
    ]


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_shuffled_is_a_seeded_derangement(n):
    samples = _samples([Image.new("RGB", (8, 8))] * n)  # in-memory images: each item's own
    donors = derangement(samples, seed=3)
    assert sorted(donors) == list(range(n))  # a permutation: every image shown exactly once
    assert all(donor != index for index, donor in enumerate(donors))
    assert derangement(samples, seed=3) == donors
    if n > 3:
        assert derangement(samples, seed=4) != donors


def test_shuffled_never_shows_an_item_its_own_file_when_questions_share_images(tmp_path):
    paths = []
    for index in range(3):  # three image files, four questions about each (as in VQA-RAD and SLAKE)
        path = tmp_path / f"{index}.png"
        Image.new("RGB", (10, 10), (index * 60, 0, 0)).save(path)
        paths += [str(path)] * 4
    samples = _samples(paths)
    donors = derangement(samples, seed=0)
    assert sorted(donors) == list(range(12))
    assert all(paths[donor] != paths[index] for index, donor in enumerate(donors))


def test_blank_is_mid_grey_at_the_size_of_the_capped_image():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 200, 3), dtype=np.uint8))
    (sample,) = _samples([image])
    blank = control_image_fn([sample], "blank", max_pixels=50 * 50)(sample)
    assert blank.size == (70, 35)  # 200x100 capped to 2,500 pixels: sqrt(2500/20000) = 0.354 -> 70x35
    assert np.unique(np.asarray(blank)).tolist() == [128]


def test_local_blank_run_shows_the_model_grey_images_and_is_a_different_run(tmp_path, tiny_model_dir):
    from test_eval_harness import write_config as local_config

    from rarl.models import load_model, load_processor

    path = local_config(tmp_path, tiny_model_dir, bertscore=False)
    config = load_config(path, ["eval.image_control=blank"])
    processor = load_processor(config.model)
    seen: list[Image.Image] = []

    class Recording:
        """The real processor, recording the images the local path passes it."""

        def __init__(self, inner):
            self.inner, self.tokenizer = inner, inner.tokenizer

        def apply_chat_template(self, *args, **kwargs):
            return self.inner.apply_chat_template(*args, **kwargs)

        def __call__(self, *args, images=None, **kwargs):
            seen.extend(images)
            return self.inner(*args, images=images, **kwargs)

    model = load_model(config.model)
    results = run_evaluation(config, model=model, processor=Recording(processor), progress=False)
    assert len(seen) == 6 and results.to_dict()["image_control"] == {"control": "blank", "seed": 0}
    for image in seen:  # synthetic 112x112 under a 112x112 budget: same size, one grey value
        assert image.size == (112, 112) and np.unique(np.asarray(image)).tolist() == [128]
    provenance = json.loads((tmp_path / "eval" / "provenance.json").read_text())["settings"]
    assert provenance["eval.image_control"] == "blank"
    with pytest.raises(UserError, match=r"other settings \(eval\.image_control: blank -> \(unset\)"):
        run_evaluation(load_config(path), progress=False)  # the normal run is refused into that directory


def test_report_pairs_a_control_run_with_its_normal_run(served, tmp_path, monkeypatch):  # noqa: F811
    """A scripted model that answers 'yes' when it sees a real image and 'no' to a uniform one."""
    monkeypatch.setenv("RARL_TEST_SERVED_KEY", "k")

    def by_image(body):
        pixels = np.asarray(decoded_image(body["messages"][1]["content"][0]))
        return "<answer>no</answer>" if np.unique(pixels).size == 1 else "<answer>yes</answer>"

    served.reply = by_image
    path = write_config(tmp_path, served)
    normal_dir, blank_dir = tmp_path / "normal", tmp_path / "blank"
    assert main(["eval", "--config", str(path), f"eval.output_dir={normal_dir}"]) == 0
    args = ["eval", "--config", str(path), "--image-control", "blank", f"eval.output_dir={blank_dir}"]
    assert main(args) == 0
    assert main(["report", str(normal_dir), str(blank_dir), "--out", str(tmp_path / "report")]) == 0
    rows = list(csv.DictReader((tmp_path / "report" / "image_control.csv").open()))
    (row,) = [r for r in rows if r["Dataset"] == "All" and r["Metric"] == "rarl Acc."]
    answers = [s.answer for s in generate_samples(6, seed=5, split="test")]
    with_image, without = 100 * answers.count("yes") / 6, 100 * answers.count("no") / 6
    assert row["Control run"] == "blank" and row["Normal run"] == "normal" and row["Image"] == "blank"
    assert row["n matched"] == "6"
    assert float(row["With image %"]) == pytest.approx(with_image, abs=1e-3)
    assert float(row["Without image %"]) == pytest.approx(without, abs=1e-3)
    assert float(row["Without − with (pp)"]) == pytest.approx(without - with_image, abs=1e-3)
    low, high = float(row["Without − with (pp) CI low"]), float(row["Without − with (pp) CI high"])
    assert low <= without - with_image <= high and low < high
    assert float(row["Survives %"]) == pytest.approx(100 * without / with_image, abs=1e-3)
    assert "Image dependence" in (tmp_path / "report" / "report.md").read_text()


def test_served_shuffled_sends_each_item_its_donors_image(served, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("RARL_TEST_SERVED_KEY", "k")
    config = load_config(write_config(tmp_path, served), ["eval.image_control=shuffled"])
    run_evaluation(config, progress=False)
    samples = generate_samples(6, seed=5, split="test")

    def capped(sample):  # the synthetic 112x112 at the 56x56 budget
        return np.asarray(sample.image.convert("RGB").resize((56, 56), Image.Resampling.BICUBIC)).tobytes()

    donors = derangement(samples, seed=0)
    expected = sorted((samples[i].question, capped(samples[d])) for i, d in enumerate(donors))
    sent = sorted(
        (
            body["messages"][1]["content"][1]["text"].removesuffix(" " + REASONING_FORMAT_HINT),
            np.asarray(decoded_image(body["messages"][1]["content"][0])).tobytes(),
        )
        for body in served.bodies
    )
    assert sent == expected  # every (question, image) pair the server saw is an item with its donor's image
    assert all(capped(samples[d]) != capped(samples[i]) for i, d in enumerate(donors))
