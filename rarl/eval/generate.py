"""Batched generation of predictions for evaluation.

Why this shape: evaluation must be deterministic (greedy by default) and cheap enough to run on every
checkpoint, so prompts are batched with left padding (each prompt ends where generation starts), images
go through the processor's own chat template (the same rendering training used), and the answer and
reasoning are extracted with :mod:`rarl.answers` — the exact code the rewards use, so metrics and
rewards can never disagree about what the model answered. Each record carries its item's fingerprint
(:mod:`rarl.provenance`) so a resumed run can tell whether the item changed since. ``on_record`` is
called after every batch's records so a caller can append them to disk immediately (resumable runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rarl.answers import extract_answer, extract_think
from rarl.prompts import INFERENCE_SYSTEM_PROMPTS, choose_template, inference_messages, training_messages
from rarl.provenance import item_fingerprint
from rarl.schema.records import PredictionRecord
from rarl.schema.sample import Sample

if TYPE_CHECKING:
    from rarl.config import DataConfig

MessagesFn = Callable[[Sample], list[dict[str, Any]]]
TRAINING_TEMPLATE_PROMPT = "training_template"  # eval.prompt: ask with the templates training used


def training_template_messages(samples: Sequence[Sample], data: DataConfig) -> MessagesFn:
    """``eval.prompt: training_template``: each sample asked with the training template the same data
    settings would give it in training (seeded by ``data.seed`` and its index in ``samples``).

    Why: a model that only ever saw the training templates (the offline demo's tiny one) says nothing
    about learning when asked with an inference prompt it never saw; this measures it on its own wording.
    """
    template_of = {
        id(sample): choose_template(
            index,
            data.seed,
            ratios=data.template_ratios,
            diversity=data.prompt_diversity,
            single=data.single_template,
        )
        for index, sample in enumerate(samples)
    }
    return lambda sample: training_messages(sample.question, template_of[id(sample)], sample.choices)


def render_prompt(processor: Any, sample: Sample, prompt: str, messages_fn: MessagesFn | None = None) -> str:
    """The chat-templated text of one sample (with the image placeholder the processor expands).

    ``messages_fn`` replaces the inference prompt with custom chat messages (e.g. a training template,
    to measure a model on the prompt wording it was trained with).
    """
    if messages_fn is not None:
        messages = messages_fn(sample)
    else:
        messages = inference_messages(sample.question, prompt, sample.choices)
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prediction_record(sample: Sample, raw: str, prompt: str, model_name: str) -> PredictionRecord:
    """The record of one generated output: answer and reasoning extracted by :mod:`rarl.answers`, the
    item's fingerprint; every backend (local, served) builds its records here, so they cannot differ."""
    extra = dict(sample.extra or {})
    return PredictionRecord(
        id=str(sample.id),
        dataset=sample.dataset,
        split=sample.split,
        question=sample.question,
        question_type=sample.question_type,
        reference_answer=sample.answer,
        model=model_name,
        prompt=prompt,
        raw_output=raw,
        pred_reasoning=extract_think(raw),
        pred_answer=extract_answer(raw),
        reference_reasoning=sample.reasoning,
        choices=list(sample.choices) if sample.choices else None,
        image=sample.image_path,
        modality=sample.modality,
        extra={k: v for k, v in extra.items() if _is_json_scalar(v)},
        fingerprint=item_fingerprint(sample),
        benchmark=sample.benchmark or None,
    )


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _batches(items: Sequence[Sample], size: int) -> Iterable[Sequence[Sample]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def generate_batch(
    model: Any,
    processor: Any,
    samples: Sequence[Sample],
    *,
    prompt: str = "reasoning",
    max_new_tokens: int = 512,
    do_sample: bool = False,
    max_pixels: int | None = None,
    messages_fn: MessagesFn | None = None,
    image_fn: Callable[[Sample], Any] | None = None,
) -> list[str]:
    """Generate the raw output text for each sample of one batch.

    ``image_fn(sample)`` gives the image shown (an image control, :mod:`rarl.eval.controls`); default: the
    item's own, loaded with ``max_pixels``.
    """
    import torch

    from rarl.data.images import load_image

    texts = [render_prompt(processor, sample, prompt, messages_fn) for sample in samples]
    load = image_fn or (lambda sample: load_image(sample.image, max_pixels=max_pixels))
    images = [load(sample) for sample in samples]
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # generation continues from the last position of every row
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    device = next(model.parameters()).device
    inputs = inputs.to(device)
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if not do_sample:
        # Checkpoints often ship sampling defaults (temperature/top_p); greedy decoding ignores them,
        # so clear them to keep decoding deterministic and the logs free of warnings.
        options.update(temperature=None, top_p=None, top_k=None)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        output = model.generate(**inputs, pad_token_id=pad_id, **options)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def generate_predictions(
    model: Any,
    processor: Any,
    samples: Sequence[Sample],
    *,
    prompt: str = "reasoning",
    batch_size: int = 8,
    max_new_tokens: int = 512,
    model_name: str = "",
    do_sample: bool = False,
    on_record: Callable[[PredictionRecord], None] | None = None,
    max_pixels: int | None = None,
    progress: bool = True,
    messages_fn: MessagesFn | None = None,
    image_fn: Callable[[Sample], Any] | None = None,
) -> list[PredictionRecord]:
    """Predict every sample in batches; returns the records in sample order.

    ``on_record`` is called for each record as soon as its batch finishes (e.g. to append it to
    predictions.jsonl), so an interrupted run keeps everything finished before the interruption.
    ``messages_fn(sample)`` replaces the inference prompt (``prompt`` is then only the label recorded).
    """
    if messages_fn is None and prompt not in INFERENCE_SYSTEM_PROMPTS:
        from rarl.errors import UserError

        raise UserError(
            f"unknown inference prompt {prompt!r}; valid options: {', '.join(INFERENCE_SYSTEM_PROMPTS)}"
        )
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    was_training = getattr(model, "training", False)
    model.eval()
    records: list[PredictionRecord] = []
    bar = None
    if progress and samples:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(samples), desc=f"generate ({prompt})", unit="sample")
    try:
        for batch in _batches(list(samples), batch_size):
            outputs = generate_batch(
                model,
                processor,
                batch,
                prompt=prompt,
                max_new_tokens=max_new_tokens,
                do_sample=do_sample,
                max_pixels=max_pixels,
                messages_fn=messages_fn,
                image_fn=image_fn,
            )
            for sample, raw in zip(batch, outputs, strict=True):
                record = prediction_record(sample, raw, prompt, model_name)
                records.append(record)
                if on_record is not None:
                    on_record(record)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        if was_training:
            model.train()
    return records


__all__ = [
    "TRAINING_TEMPLATE_PROMPT",
    "generate_batch",
    "generate_predictions",
    "prediction_record",
    "render_prompt",
    "training_template_messages",
]
