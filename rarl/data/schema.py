"""Re-export of :mod:`rarl.schema.sample` (the sample schema lives at the bottom layer, below config)."""

from rarl.schema.sample import QUESTION_TYPES, QuestionType, Sample

__all__ = ["QUESTION_TYPES", "QuestionType", "Sample"]
