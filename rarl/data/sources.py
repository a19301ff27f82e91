"""Re-export of :mod:`rarl.schema.sources`: the source registry sits below ``rarl.config`` (which
validates source names) so that config never imports ``rarl.data``."""

from rarl.schema.sources import DEFAULT_SPLITS, HUB_DATASETS, SOURCE_NAMES, SOURCES, SourceInfo

__all__ = ["DEFAULT_SPLITS", "HUB_DATASETS", "SOURCES", "SOURCE_NAMES", "SourceInfo"]
