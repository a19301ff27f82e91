"""One module per benchmark, under one registry: what defines a benchmark (its reference rules, its official
scorer and how that scorer aggregates).

Why here and not in the evaluation code: a benchmark's official number is part of the benchmark, not of
rarl, and a researcher comparing with published results must find it in one place. Adding a benchmark is
one module exporting a :class:`~rarl.tasks.base.Task` named ``TASK`` and one line in :data:`TASKS`.

A benchmark without a module here (VQA-RAD, SLAKE, PathVQA, generic tables) is scored by
:data:`~rarl.tasks.base.GENERIC`: its reference is one answer, taken literally (no ``#`` alternatives, no
optional ``( … )`` parts: those are VQA-Med's rules), and it has no ``official`` metrics.
"""

from __future__ import annotations

from rarl.tasks import cvbench, vqa_med_2019
from rarl.tasks.base import GENERIC, Task

TASKS: dict[str, Task] = {
    vqa_med_2019.TASK.name: vqa_med_2019.TASK,
    cvbench.TASK.name: cvbench.TASK,
}


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


__all__ = ["GENERIC", "TASKS", "Task", "reference_forms", "task_for"]
