"""Datasets: one :class:`~rarl.data.schema.Sample` schema, a loader per source, images, synthetic data."""

from rarl.data.schema import QUESTION_TYPES, QuestionType, Sample

__all__ = ["QUESTION_TYPES", "QuestionType", "Sample"]
