"""The one sample schema every loader produces and every consumer (training, eval, review) reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

QuestionType = Literal["closed", "open", "choice"]
QUESTION_TYPES: tuple[str, ...] = ("closed", "open", "choice")


@dataclass
class Sample:
    """One visual question-answer item.

    ``image`` is a file path (PNG/JPG/DICOM) or an in-memory ``PIL.Image``; ``answer`` is the short
    reference answer; ``reasoning`` the optional reference explanation (only annotated sets have it, and
    only those samples receive the reasoning reward); ``choices`` holds the options of multiple-choice
    questions, whose ``answer`` is then the correct option's letter, e.g. ``"(A)"``.
    """

    id: str
    image: Any
    question: str
    answer: str
    question_type: QuestionType
    reasoning: str | None = None
    choices: list[str] | None = None
    modality: str | None = None
    dataset: str = ""
    split: str = ""
    benchmark: str = ""  # the source whose task scores it (rarl.tasks), whatever the dataset's label
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific fields (task, category, ...)

    @property
    def image_path(self) -> str | None:
        """The image's path when it lives on disk (for records and the review page)."""
        return self.image if isinstance(self.image, str) else None
