"""One module per benchmark, under one registry: what defines a benchmark (its loaders, its question
typing, its reference rules, its official scorer and how that scorer aggregates).

Why here and not in the data or evaluation code: a benchmark's layout and official number are part of the
benchmark, not of rarl, and a researcher comparing with published results must find them in one place.
The registry is :data:`rarl.schema.sources.SOURCES` (the one list the config also reads): every entry with
a ``module`` names ``rarl/tasks/<module>.py``, which exports a :class:`~rarl.tasks.base.Task` named
``TASK``; :data:`TASKS` is built from it here. Adding a benchmark is that one file and one ``SourceInfo``
line. Loading a configured dataset (the dispatch, the generic tables, naming and subsampling) is
:mod:`rarl.tasks.loading`.

A benchmark without official rules (VQA-RAD, SLAKE, PathVQA, and the generic tables) is scored by the
defaults of :class:`~rarl.tasks.base.Task`: its reference is one answer, taken literally (no ``#``
alternatives, no optional ``( … )`` parts: those are VQA-Med's rules), and it has no ``official`` metrics;
a label that names no task gets :data:`~rarl.tasks.base.GENERIC`, the same defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import import_module

from rarl.schema.sources import SOURCES, SourceInfo
from rarl.tasks.base import GENERIC, Task


def build_tasks(sources: Iterable[SourceInfo]) -> dict[str, Task]:
    """Source name → the ``TASK`` of ``rarl/tasks/<module>.py`` for every source naming a module, imported
    by the name its registry line gives (no import list here to keep in step)."""
    return {info.name: import_module(f"rarl.tasks.{info.module}").TASK for info in sources if info.module}


def hub_datasets(tasks: Mapping[str, Task]) -> dict[str, str]:
    """Hub dataset id (lower case) → the source whose loader knows its columns (each task's ``hub_ids``)."""
    return {hub_id.lower(): name for name, task in tasks.items() for hub_id in task.hub_ids}


TASKS: dict[str, Task] = build_tasks(SOURCES)
HUB_DATASETS: dict[str, str] = hub_datasets(TASKS)


def task_for(benchmark: str | None, dataset: str | None = None) -> Task:
    """The task of a benchmark (a source name, ``Sample.benchmark``); predictions written before records
    carried it fall back on their dataset label when that is a benchmark's name; else :data:`GENERIC`."""
    for name in (benchmark, dataset):
        if name and name in TASKS:
            return TASKS[name]
    return GENERIC


def reference_forms(benchmark: str | None, reference: str | None, dataset: str | None = None) -> list[str]:
    """The accepted forms of a reference under its benchmark's rules (natural text, not normalised)."""
    return task_for(benchmark, dataset).reference_forms(str(reference or ""))


__all__ = [
    "GENERIC",
    "HUB_DATASETS",
    "TASKS",
    "Task",
    "build_tasks",
    "hub_datasets",
    "reference_forms",
    "task_for",
]
