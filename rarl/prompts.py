"""Prompt templates (the paper's Appendix A and §3.3) and chat-message builders.

Why: templates are data. Training picks one of three templates per sample (prompting diversity, seeded);
inference uses a reasoning or a non-reasoning system prompt. Everything is rendered through the
processor's chat template together with the image, so the same messages work for any Qwen2-VL checkpoint.
"""

from __future__ import annotations

import random
from typing import Any

TRAINING_TEMPLATES: dict[str, str] = {
    "explanation": (
        "You are a Medical Assistant. Carefully analyze the medical image and the User's question. Think "
        "through the problem step by step using clinical reasoning and relevant visual cues. Present your "
        "thinking process clearly within <think> </think> tags, and then provide a well-justified answer "
        "within <answer> </answer> tags. User: {question} Assistant: Let me solve this step by step."
    ),
    "short": (
        "You are a Medical Assistant. Read the User's question and the associated medical image. Provide "
        "your thinking within <think> </think> tags and a concise factual answer within <answer> </answer> "
        "tags. User: {question} Assistant:"
    ),
    "open_ended": (
        # "askes" is the paper's spelling; kept verbatim so prompts match the published setup.
        "You are a Medical Assistant. The User askes a question based on the provided medical image. "
        "Consider all visual and contextual details. Share your reasoning freely within <think> </think> "
        "tags, and conclude with your best judgment within <answer> </answer> tags. User: {question} "
        "Assistant:"
    ),
}

INFERENCE_SYSTEM_PROMPTS: dict[str, str] = {
    "reasoning": (
        "A conversation between a User and a Medical Assistant. The User asks a question about the image, "
        "and the Assistant solves it. The Assistant first thinks through the reasoning process step-by-step, "
        "then provides the answer to the User."
    ),
    "non_reasoning": (
        "A conversation between a User and a Medical Assistant. "
        "The Assistant provides the answer to the User."
    ),
}

# Appended to the question under the reasoning prompt so the output format matches what was trained.
REASONING_FORMAT_HINT = (
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)


def choose_template(
    sample_index: int,
    seed: int,
    ratios: dict[str, float] | None = None,
    diversity: bool = True,
    single: str = "explanation",
) -> str:
    """Pick a training template name for one sample: seeded by (seed, index), weighted by ``ratios``.

    Seeding per sample (not a shared stream) keeps the choice stable when a dataset is filtered or resumed.
    """
    if not diversity:
        return single
    weights = ratios or {name: 1.0 for name in TRAINING_TEMPLATES}
    names = [name for name in TRAINING_TEMPLATES if weights.get(name, 0.0) > 0]
    rng = random.Random(f"{seed}:{sample_index}")
    return rng.choices(names, weights=[weights[name] for name in names], k=1)[0]


def render_question(question: str, choices: list[str] | None = None) -> str:
    """The question text shown to the model; multiple-choice options are listed as (A) ..., (B) ..."""
    if not choices:
        return question
    options = " ".join(f"({chr(ord('A') + i)}) {choice}" for i, choice in enumerate(choices))
    return f"{question} Options: {options}"


def training_messages(question: str, template: str, choices: list[str] | None = None) -> list[dict[str, Any]]:
    """Chat messages for GRPO/SFT: one user turn holding the image and the templated question.

    No system turn, as the paper's templates are the user's prompt: Qwen2-VL-Instruct's chat template then
    inserts its default "You are a helpful assistant." system turn, as TRL renders it (docs/training.md).
    """
    text = TRAINING_TEMPLATES[template].format(question=render_question(question, choices))
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def inference_messages(
    question: str, prompt: str = "reasoning", choices: list[str] | None = None
) -> list[dict[str, Any]]:
    """Chat messages for evaluation with the reasoning or non-reasoning system prompt."""
    text = render_question(question, choices)
    if prompt == "reasoning":
        text = f"{text} {REASONING_FORMAT_HINT}"
    return [
        {"role": "system", "content": [{"type": "text", "text": INFERENCE_SYSTEM_PROMPTS[prompt]}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
    ]
