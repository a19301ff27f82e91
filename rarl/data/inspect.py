"""``rarl data inspect``: what a config (or a dataset path) will feed the model, before any GPU time is spent.

Why: most failed fine-tuning runs are data problems — the wrong split, Chinese rows in an English set, every
question typed "open", a template that never shows the choices. Inspect loads exactly what training and
evaluation would load (the command passes :func:`rarl.tasks.loading.load_dataset_spec` down: this module
knows no benchmark), prints counts per split and question type, and renders a few prompts through
:mod:`rarl.prompts` the way the model will see them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rarl.config import DataConfig, DatasetSpec
from rarl.data import count_types
from rarl.errors import UserError
from rarl.schema.sample import Sample
from rarl.schema.sources import DEFAULT_SPLITS


@dataclass
class Inspected:
    """One loaded split (or the error that stopped it) and how its prompts are rendered."""

    spec: DatasetSpec
    role: str  # "train" (training templates) or "eval" (inference prompt)
    samples: list[Sample] | None = None
    error: str | None = None


def specs_for_path(path: str, source: str, splits: list[str] | None, **fields: Any) -> list[DatasetSpec]:
    """DatasetSpecs for inspecting a bare path as ``source`` (given, or guessed by the command through
    :func:`rarl.tasks.loading.guess_source`): the given splits, or the source's usual ones."""
    names = splits or list(DEFAULT_SPLITS.get(source, ("train",)))
    base = DatasetSpec(source=source, path=None if source == "synthetic" else path, **fields)  # type: ignore[arg-type]
    return [replace(base, split=name) for name in names]


def load_all(
    items: list[Inspected], load: Callable[[DatasetSpec], list[Sample]], tolerate_missing: bool
) -> None:
    """Load every split with ``load`` (what training and evaluation load through); with
    ``tolerate_missing`` a split that cannot be loaded is reported, not fatal."""
    for item in items:
        try:
            item.samples = load(item.spec)
        except UserError as exc:
            if not tolerate_missing:
                raise
            item.error = str(exc)


def render_messages(messages: list[dict[str, Any]], processor: Any = None) -> str:
    """Messages as the model sees them: the processor's chat template when given, else readable text."""
    if processor is not None:
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = []
    for message in messages:
        parts = [part["text"] if part["type"] == "text" else "<image>" for part in message["content"]]
        lines.append(f"[{message['role']}] " + " ".join(parts))
    return "\n".join(lines)


def sample_messages(
    sample: Sample, index: int, role: str, data: DataConfig, prompt: str
) -> list[dict[str, Any]]:
    """The chat messages for one sample: a training template (seeded choice) or the inference prompt."""
    from rarl import prompts

    if role == "train":
        template = prompts.choose_template(
            index, data.seed, data.template_ratios, data.prompt_diversity, data.single_template
        )
        return prompts.training_messages(sample.question, template, sample.choices)
    return prompts.inference_messages(sample.question, prompt, sample.choices)


def print_report(
    items: list[Inspected],
    data: DataConfig,
    prompt: str,
    show: int,
    processor: Any = None,
    console: Any = None,
) -> None:
    """Counts table plus ``show`` rendered prompts per loaded split."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        import shutil

        console = Console(width=max(100, shutil.get_terminal_size((120, 24)).columns))
    table = Table(title="datasets", show_lines=False)
    for column in ("role", "dataset", "source", "split", "samples", "closed", "open", "choice", "reasoning"):
        table.add_column(
            column, justify="right" if column in ("samples", "closed", "open", "choice") else "left"
        )
    for item in items:
        name = item.spec.name or item.spec.source
        if item.samples is None:
            table.add_row(
                item.role, name, item.spec.source, item.spec.split, "-", "-", "-", "-", item.error or ""
            )
            continue
        counts = count_types(item.samples)
        with_reasoning = sum(1 for s in item.samples if s.reasoning)
        table.add_row(
            item.role, name, item.spec.source, item.spec.split, str(len(item.samples)),
            *(str(counts[t]) for t in ("closed", "open", "choice")), str(with_reasoning),
        )  # fmt: skip
    console.print(table)
    for item in items:
        if not item.samples or show <= 0:
            continue
        name = item.spec.name or item.spec.source
        for index, sample in enumerate(item.samples[:show]):
            text = render_messages(sample_messages(sample, index, item.role, data, prompt), processor)
            console.rule(f"{name}/{item.spec.split} #{index} id={sample.id} ({sample.question_type})")
            console.print(text, markup=False, highlight=False, soft_wrap=True)
            image = sample.image_path or f"<in-memory {type(sample.image).__name__}>"
            console.print(f"image: {image}", markup=False, highlight=False, soft_wrap=True)
            console.print(f"reference answer: {sample.answer}", markup=False, highlight=False, soft_wrap=True)
            if sample.reasoning:
                console.print(
                    f"reference reasoning: {sample.reasoning}", markup=False, highlight=False, soft_wrap=True
                )


__all__ = [
    "DEFAULT_SPLITS",
    "Inspected",
    "load_all",
    "print_report",
    "render_messages",
    "specs_for_path",
]
