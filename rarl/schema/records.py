"""The prediction record: one line of ``predictions.jsonl``.

Why a fixed schema: predictions are produced by ``rarl eval``, scored by ``rarl judge``, rated by
clinicians in ``rarl review`` and merged by ``rarl report``; all of them read and write this one shape.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def from_known_fields(cls: type[T], data: dict[str, Any]) -> T:
    """``cls(**data)`` keeping only ``cls``'s fields.

    Why: a line written by a newer (or older) rarl may carry fields this one does not know; the records
    of predictions, judgements and scores read them all the same instead of failing on one extra key.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class PredictionRecord:
    """A model's output for one sample, with the references needed to score it."""

    id: str  # sample id; unique within (dataset, split)
    dataset: str
    split: str
    question: str
    question_type: str  # closed | open | choice
    reference_answer: str
    model: str  # model name or path (+ adapter) that produced the output
    prompt: str  # reasoning | non_reasoning
    raw_output: str  # the full generated text
    pred_reasoning: str  # the extracted <think> text ("" when absent)
    pred_answer: str  # the extracted answer
    reference_reasoning: str | None = None
    choices: list[str] | None = None
    image: str | None = None  # image path when the sample's image lives on disk
    modality: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. cvbench task, rule-metric values
    fingerprint: str | None = None  # rarl.provenance.item_fingerprint of the item it was made from
    benchmark: str | None = None  # Sample.benchmark: which task's reference rules and scorers apply

    @property
    def key(self) -> str:
        """Identity of an item across runs: used for resuming, caching and joining ratings."""
        return f"{self.dataset}/{self.split}/{self.id}"

    @property
    def output_fingerprint(self) -> str:
        """Identity of the exact output shown to a rater (its generated text and extracted parts).

        Why: a rating belongs to what was rated. A second run of the same model on the same item (the
        non-reasoning prompt, a regenerated file) has the same :attr:`key` but other text, and must not
        inherit the first run's ratings; an identical text is the same output wherever it comes from.
        """
        text = "\0".join((self.raw_output, self.pred_reasoning, self.pred_answer))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    @property
    def output_id(self) -> tuple[str, str, str, str]:
        """``(model, prompt, key, output_fingerprint)``: one rated output of one run."""
        return (self.model, self.prompt, self.key, self.output_fingerprint)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionRecord:
        return from_known_fields(cls, data)
