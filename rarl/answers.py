"""Answer extraction and normalisation, shared by the training rewards and the evaluation metrics.

(Being completed under the rewards issue; ``infer_question_type`` is used by the dataset loaders.)
"""

from __future__ import annotations

import re

YES_NO = frozenset({"yes", "no"})


def _basic_normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s.]", " ", text.lower())).strip(" .")


def infer_question_type(answer: str) -> str:
    """Closed-type rule for sources without an answer type: the reference answer is yes or no."""
    return "closed" if _basic_normalize(answer) in YES_NO else "open"
