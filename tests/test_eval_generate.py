"""Batched generation on the tiny Qwen2-VL: left padding, batch-size invariance, records, callbacks."""

from __future__ import annotations

import pytest

from rarl.data.synthetic import generate_samples
from rarl.errors import UserError
from rarl.eval.generate import generate_predictions, render_prompt
from rarl.prompts import INFERENCE_SYSTEM_PROMPTS


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_config):
    from rarl.models import load_model, load_processor

    return load_model(tiny_model_config, device="cpu"), load_processor(tiny_model_config)


def test_batched_greedy_equals_one_by_one_and_records_are_complete(model_and_processor):
    model, processor = model_and_processor
    samples = generate_samples(5, seed=3, split="test")
    seen = []
    batched = generate_predictions(
        model,
        processor,
        samples,
        batch_size=4,
        max_new_tokens=8,
        model_name="tiny",
        on_record=seen.append,
        progress=False,
    )
    single = generate_predictions(model, processor, samples, batch_size=1, max_new_tokens=8, progress=False)
    # Left padding: a prompt's output must not depend on what else is in its batch.
    assert [r.raw_output for r in batched] == [r.raw_output for r in single]
    assert [r.key for r in seen] == [r.key for r in batched]
    assert all(r.raw_output for r in batched)
    for sample, record in zip(samples, batched, strict=True):
        assert record.key == f"synthetic/test/{sample.id}"
        assert record.reference_answer == sample.answer and record.question_type == sample.question_type
        assert record.model == "tiny" and record.prompt == "reasoning"
        assert record.reference_reasoning == sample.reasoning
    assert model.training is False


def test_prompts_render_the_chosen_system_prompt_and_the_image(model_and_processor):
    _, processor = model_and_processor
    sample = generate_samples(1, seed=0, split="test")[0]
    reasoning = render_prompt(processor, sample, "reasoning")
    plain = render_prompt(processor, sample, "non_reasoning")
    assert INFERENCE_SYSTEM_PROMPTS["reasoning"] in reasoning and "<think>" in reasoning
    assert INFERENCE_SYSTEM_PROMPTS["non_reasoning"] in plain and "<think>" not in plain
    assert "<|vision_start|>" in reasoning and sample.question in reasoning


def test_answer_extraction_is_applied_to_outputs(model_and_processor, monkeypatch):
    import rarl.eval.generate as gen

    model, processor = model_and_processor
    samples = generate_samples(2, seed=0, split="test")
    outputs = iter([["<think>bright spot on the left</think><answer>yes</answer>", "Answer: no"]])
    monkeypatch.setattr(gen, "generate_batch", lambda *a, **k: next(outputs))
    records = generate_predictions(model, processor, samples, batch_size=2, progress=False)
    assert (records[0].pred_reasoning, records[0].pred_answer) == ("bright spot on the left", "yes")
    assert (records[1].pred_reasoning, records[1].pred_answer) == ("", "no")


def test_unknown_prompt_is_a_user_error(model_and_processor):
    model, processor = model_and_processor
    with pytest.raises(UserError, match="valid options"):
        generate_predictions(model, processor, [], prompt="chatty")


def test_custom_messages_replace_the_inference_prompt(model_and_processor):
    from rarl.prompts import TRAINING_TEMPLATES, training_messages

    model, processor = model_and_processor
    samples = generate_samples(2, seed=0, split="test")

    def messages(sample):
        return training_messages(sample.question, "short", sample.choices)

    rendered = render_prompt(processor, samples[0], "training:short", messages)
    assert TRAINING_TEMPLATES["short"].split("{question}")[0] in rendered
    assert INFERENCE_SYSTEM_PROMPTS["reasoning"] not in rendered
    records = generate_predictions(
        model,
        processor,
        samples,
        prompt="training:short",
        messages_fn=messages,
        max_new_tokens=4,
        progress=False,
    )
    assert [r.prompt for r in records] == ["training:short"] * 2 and all(r.raw_output for r in records)
