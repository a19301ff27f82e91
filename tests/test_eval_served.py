"""`eval.backend: openai`: `rarl eval` against a scripted OpenAI-style server on 127.0.0.1.

The server (the judges' test server, answering chat completions) records every request, so the tests check
what was sent over the wire — the system prompt, the question, the image as a data URL decoding to the
local path's pixels — and that the run writes predictions, scores and results, resumes, and refuses a
resume against another server or served model.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image
from pydicom.data import get_testdata_file
from test_judge_http import JudgeServer

from rarl.cli import main
from rarl.config import OpenAIGenerationConfig, load_config
from rarl.data.synthetic import generate_samples
from rarl.errors import UserError
from rarl.eval.generate import generate_predictions
from rarl.eval.harness import read_predictions, run_evaluation
from rarl.eval.served import generate_served
from rarl.prompts import INFERENCE_SYSTEM_PROMPTS, REASONING_FORMAT_HINT
from rarl.provenance import item_fingerprint
from rarl.schema.results import read_results
from rarl.schema.sample import Sample
from rarl.schema.scores import read_scores

CANNED = "<think>I looked at the image.</think><answer>yes</answer>"


class ServedModel(JudgeServer):
    """The judges' scripted server answering as a served VLM: every reply is :data:`CANNED` (or what
    ``reply(body)`` returns when set), except that a question containing ``down_for`` gets HTTP 503 (every
    attempt)."""

    def __init__(self):
        super().__init__()
        self.down_for: str | None = None
        self.reply = None

    def respond(self, handler, path, case, attempt):
        assert path == "/v1/chat/completions"
        if self.down_for and self.down_for in handler.last_text:
            return self.send(handler, 503, {"error": {"message": "overloaded", "type": "server_error"}})
        return self.completion(handler, self.reply(handler.last_body) if self.reply else CANNED)


@pytest.fixture
def served():
    srv = ServedModel()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def write_config(tmp_path, server, **openai):
    data = {
        "model": {"name_or_path": "not-loaded/for-a-served-model", "max_pixels": 56 * 56},
        "data": {"eval": [{"source": "synthetic", "split": "test", "num_samples": 6, "seed": 5}]},
        "eval": {
            "output_dir": str(tmp_path / "eval"),
            "max_new_tokens": 16,
            "bertscore": False,
            "backend": "openai",
            "openai": {
                "base_url": server.base_url,
                "model": "served-model",
                "api_key_env": "RARL_TEST_SERVED_KEY",
                "concurrency": 3,
                "max_retries": 1,
                "timeout_s": 5,
                "backoff_s": 0.01,
                **openai,
            },
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def decoded_image(part: dict) -> Image.Image:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_served_eval_sends_the_local_prompt_and_pixels_and_writes_the_outputs(served, tmp_path, monkeypatch):
    monkeypatch.setenv("RARL_TEST_SERVED_KEY", "sk-served")
    config = load_config(write_config(tmp_path, served))
    results = run_evaluation(config, progress=False)
    samples = generate_samples(6, seed=5, split="test")

    # What the server received: one request per item, the model, greedy decoding, the token budget.
    assert len(served.bodies) == 6
    by_question: dict[str, list[dict]] = {}
    for body in served.bodies:
        assert body["model"] == "served-model" and body["temperature"] == 0 and body["max_tokens"] == 16
        system, user = body["messages"]
        assert system == {"role": "system", "content": INFERENCE_SYSTEM_PROMPTS["reasoning"]}
        image_part, text_part = user["content"]
        assert user["role"] == "user" and image_part["type"] == "image_url" and text_part["type"] == "text"
        assert text_part["text"].endswith(REASONING_FORMAT_HINT)
        by_question.setdefault(text_part["text"].removesuffix(" " + REASONING_FORMAT_HINT), []).append(body)
    assert all(h["authorization"] == "Bearer sk-served" for h in served.headers)
    assert 1 < served.max_in_flight <= 3
    # The image: the synthetic 112x112 capped to the 56x56 budget, the same pixels as the local loader's.
    for sample in samples:
        bodies = by_question[sample.question]
        images = [decoded_image(body["messages"][1]["content"][0]) for body in bodies]
        expected = np.asarray(sample.image.convert("RGB").resize((56, 56), Image.Resampling.BICUBIC))
        assert any(image.size == (56, 56) and np.array_equal(np.asarray(image), expected) for image in images)

    # The outputs, as the local path writes them.
    records = read_predictions(tmp_path / "eval" / "predictions.jsonl")
    assert [r.id for r in records] == [s.id for s in samples]
    for record, sample in zip(records, samples, strict=True):
        assert record.model == "openai:served-model" and record.raw_output == CANNED
        assert record.pred_answer == "yes" and record.pred_reasoning == "I looked at the image."
        assert record.reference_answer == sample.answer and record.fingerprint == item_fingerprint(sample)
    typed = read_results(tmp_path / "eval" / "results.json")
    expected_accuracy = sum(s.answer == "yes" for s in samples) / len(samples)
    assert typed.model == "openai:served-model" and typed.n == 6
    assert typed.rule_metrics.overall.lookup("rarl.accuracy") == pytest.approx(expected_accuracy)
    scores = [row for row in read_scores(tmp_path / "eval" / "scores.jsonl") if row.metric == "rarl.accuracy"]
    assert sorted(row.value for row in scores) == sorted(float(s.answer == "yes") for s in samples)
    assert results.generation["backend"] == {
        "name": "openai",
        "base_url": served.base_url,
        "model": "served-model",
    }
    provenance = json.loads((tmp_path / "eval" / "provenance.json").read_text())["settings"]
    assert provenance["eval.openai.base_url"] == served.base_url and "model.name_or_path" not in provenance


def test_a_finished_served_run_resumes_and_another_server_or_model_is_refused(served, tmp_path, monkeypatch):
    monkeypatch.setenv("RARL_TEST_SERVED_KEY", "sk-served")
    path = write_config(tmp_path, served)
    run_evaluation(load_config(path), progress=False)
    assert len(served.bodies) == 6
    again = run_evaluation(load_config(path), progress=False)
    assert len(served.bodies) == 6 and again.generation["resumed"] == 6  # nothing asked again
    other = ServedModel()
    other.thread.start()
    try:
        for override in (f"eval.openai.base_url={other.base_url}", "eval.openai.model=another-model"):
            refused = r"produced with other settings \(eval\.openai\.(base_url|model)"
            with pytest.raises(UserError, match=refused):
                run_evaluation(load_config(path, [override]), progress=False)
        assert other.bodies == []
    finally:
        other.httpd.shutdown()
        other.httpd.server_close()


def test_an_item_failing_after_its_retries_stops_the_run_and_a_rerun_resumes(served, tmp_path, monkeypatch):
    monkeypatch.setenv("RARL_TEST_SERVED_KEY", "sk-served")
    path = write_config(tmp_path, served, concurrency=1)
    samples = generate_samples(6, seed=5, split="test")
    served.down_for = samples[3].question  # this question (and any other item asking it) fails
    stopped = r"eval\.openai: item .* failed after 2 attempt\(s\) .*rerun to resume"
    with pytest.raises(UserError, match=stopped):
        run_evaluation(load_config(path), progress=False)
    kept = read_predictions(tmp_path / "eval" / "predictions.jsonl")
    assert 0 < len(kept) < 6 and all(r.question != samples[3].question for r in kept)
    asked = len(served.bodies)
    served.down_for = None
    results = run_evaluation(load_config(path), progress=False)
    assert results.generation["resumed"] == len(kept) and results.n == 6
    assert len(served.bodies) - asked == 6 - len(kept)  # only the missing items were asked


def test_served_dicom_pixels_equal_what_the_local_path_hands_the_processor(served, tmp_path, tiny_model_dir):
    """The local path's pixels are taken from a real processor on the tiny model (a recording wrapper)."""
    from rarl.config import ModelConfig
    from rarl.models import load_model, load_processor

    model_config = ModelConfig(name_or_path=str(tiny_model_dir), dtype="float32", max_pixels=64 * 64)
    processor = load_processor(model_config)
    seen: list[Image.Image] = []

    class Recording:
        """The real processor, recording the images the local path passes it."""

        def __init__(self, inner):
            self.inner = inner
            self.tokenizer = inner.tokenizer

        def apply_chat_template(self, *args, **kwargs):
            return self.inner.apply_chat_template(*args, **kwargs)

        def __call__(self, *args, images=None, **kwargs):
            seen.extend(images)
            return self.inner(*args, images=images, **kwargs)

    sample = Sample(
        id="ct", dataset="d", split="test", question="What is shown?", answer="ct", question_type="open",
        image=get_testdata_file("CT_small.dcm"),
    )
    model = load_model(model_config)
    generate_predictions(
        model, Recording(processor), [sample], max_new_tokens=2, max_pixels=64 * 64, progress=False
    )
    endpoint = OpenAIGenerationConfig(base_url=served.base_url, model="m", api_key_env="", max_retries=0)
    generate_served(endpoint, [sample], max_pixels=64 * 64, progress=False)
    (local,) = seen
    sent = decoded_image(served.bodies[0]["messages"][1]["content"][0])
    assert sent.mode == "RGB" and sent.size == local.size and local.size[0] * local.size[1] <= 64 * 64
    assert np.array_equal(np.asarray(sent), np.asarray(local))


def test_served_backend_settings_are_checked_at_load_all_at_once(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump({"eval": {"backend": "openai", "openai": {"timeout_s": 0, "concurrency": 0}}})
    )
    assert main(["eval", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "3 invalid settings" in err and "Traceback" not in err
    for field in ("eval.openai.model", "eval.openai.timeout_s", "eval.openai.concurrency"):
        assert re.search(rf"{re.escape(field)}: must", err), field


def test_a_missing_api_key_is_refused_before_any_work(served, tmp_path, monkeypatch):
    monkeypatch.delenv("RARL_TEST_SERVED_KEY", raising=False)
    missing = r"eval\.openai: environment variable RARL_TEST_SERVED_KEY is not set"
    with pytest.raises(UserError, match=missing):
        run_evaluation(load_config(write_config(tmp_path, served)), progress=False)
    assert served.bodies == [] and not (tmp_path / "eval" / "predictions.jsonl").exists()


def test_local_only_settings_are_refused_with_the_served_backend(served, tmp_path, capsys):
    path = write_config(tmp_path, served)
    assert main(["eval", "--config", str(path), "model.adapter_path=outputs/some-run"]) == 2
    assert "model.adapter_path: not used when eval.backend is openai" in capsys.readouterr().err
    assert main(["eval", "--config", str(path), "--checkpoints", "last"]) == 2
    assert "--checkpoints evaluates a training run's checkpoints in-process" in capsys.readouterr().err
    assert served.bodies == []


def test_the_training_template_prompt_is_refused_with_the_served_backend(tmp_path):
    """The served backend builds the inference prompts; asking it for training templates is a config error
    (exit 2 at load), not a crash after the first request."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {name_or_path: tiny}\n"
        "data: {eval: [{source: synthetic, split: test, num_samples: 2}]}\n"
        "eval: {backend: openai, prompt: training_template,"
        " openai: {model: m, base_url: 'http://127.0.0.1:1/v1'}}\n"
    )
    with pytest.raises(UserError, match=r"eval\.prompt: training_template .* eval\.backend openai"):
        load_config(path)
