"""Turn :class:`~rarl.schema.sample.Sample` lists into the datasets TRL's trainers consume.

Why this shape: TRL's GRPO and SFT trainers handle vision-language models when every row has a
*conversational* ``prompt`` and an ``image`` column; the trainer inserts the image into the first user turn
and renders the processor's chat template itself. Extra columns (``answer``, ``question_type``,
``reasoning``, ``choices``) are passed to the reward functions by name. The training template (prompting
diversity: one of three phrasings) is chosen per sample with a seed, so a run is reproducible and
resuming sees the same prompts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rarl.prompts import choose_template, training_messages
from rarl.schema.sample import Sample

if TYPE_CHECKING:
    from datasets import Dataset

    from rarl.config import DataConfig


def sft_target(sample: Sample) -> str:
    """The SFT target ``<think>reasoning</think><answer>answer</answer>`` (reasoning may be empty)."""
    reasoning = (sample.reasoning or "").strip()
    return f"<think>{reasoning}</think><answer>{sample.answer.strip()}</answer>"


def _prompt_text(sample: Sample, template: str) -> str:
    """The templated user text; the image placeholder is added by TRL (one image, before the text)."""
    messages = training_messages(sample.question, template, sample.choices)
    return next(part["text"] for part in messages[0]["content"] if part.get("type") == "text")


def template_names(samples: Sequence[Sample], data: DataConfig) -> list[str]:
    """The training template of every sample (seeded by ``data.seed`` and the sample index)."""
    return [
        choose_template(
            index,
            data.seed,
            ratios=data.template_ratios,
            diversity=data.prompt_diversity,
            single=data.single_template,
        )
        for index in range(len(samples))
    ]


def build_rows(
    samples: Sequence[Sample],
    data: DataConfig,
    *,
    with_completion: bool = False,
    max_pixels: int | None = None,
) -> list[dict[str, Any]]:
    """Plain rows: prompt (conversational, string content), image (PIL), reward columns, template name."""
    from rarl.data.images import load_image

    rows = []
    for sample, template in zip(samples, template_names(samples, data), strict=True):
        row: dict[str, Any] = {
            "id": str(sample.id),
            "dataset": sample.dataset,
            "benchmark": sample.benchmark or None,  # the reward applies this benchmark's reference rules
            "prompt": [{"role": "user", "content": _prompt_text(sample, template)}],
            "image": load_image(sample.image, max_pixels=max_pixels),
            "answer": sample.answer,
            "question_type": sample.question_type,
            "reasoning": sample.reasoning if sample.reasoning and sample.reasoning.strip() else None,
            "choices": list(sample.choices) if sample.choices else None,
            "template": template,
        }
        if with_completion:
            row["completion"] = [{"role": "assistant", "content": sft_target(sample)}]
        rows.append(row)
    return rows


def build_train_dataset(
    samples: Sequence[Sample],
    data: DataConfig,
    *,
    with_completion: bool = False,
    max_pixels: int | None = None,
) -> Dataset:
    """A ``datasets.Dataset`` for ``GRPOTrainer`` (``with_completion=False``) or ``SFTTrainer`` (True)."""
    from datasets import Dataset

    if not samples:
        from rarl.errors import UserError

        raise UserError("no training samples: check data.train in the config")
    rows = build_rows(samples, data, with_completion=with_completion, max_pixels=max_pixels)
    return Dataset.from_list(rows)


def template_counts(dataset: Any) -> dict[str, int]:
    """How many rows use each training template (logged so the diversity mix is visible)."""
    return dict(sorted(Counter(dataset["template"]).items()))


__all__ = ["build_rows", "build_train_dataset", "sft_target", "template_counts", "template_names"]
