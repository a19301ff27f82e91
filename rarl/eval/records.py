"""Re-export of :class:`rarl.schema.records.PredictionRecord` for existing imports (new code imports
:mod:`rarl.schema.records`)."""

from rarl.schema.records import PredictionRecord

__all__ = ["PredictionRecord"]
