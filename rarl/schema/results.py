"""A run's ``results.json``: one frozen dataclass, serialised by ``to_dict`` and read back by ``from_dict``.

Why here: ``rarl eval``/``rarl judge`` build a :class:`RunResults` (its numbers from the one aggregation of
the per-item score rows, :mod:`rarl.eval.aggregate`) and write ``RunResults.to_dict()``; the report, the
checkpoint selection and the CLI read it back with :func:`read_results`. One shape in the shared schema
means one place that knows the file, tolerates the older shapes (no intervals, no judges, a bare
``{"model": ...}``) and names the file and field when a value has the wrong type. ``from_dict(to_dict(r))
== r`` for every results object rarl writes (tested).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rarl.errors import DataError

# Metric names of results.json files written before every metric named its family (rarl/official): read
# under the current names, so older runs still fill the report's columns.
LEGACY_NAMES = {
    "accuracy": "rarl.accuracy",
    "exact": "rarl.exact",
    "token_recall": "rarl.token_recall",
    "token_f1": "rarl.token_f1",
    "bertscore": "rarl.bertscore",
    "accuracy_2d": "official.accuracy_2d",
    "accuracy_3d": "official.accuracy_3d",
    "combined": "official.combined",
}


# The top-level fields RunResults types; any other is kept as it is in ``RunResults.extra``.
KNOWN_TOP_LEVEL = frozenset(
    {
        "model",
        "prompt",
        "n",
        "datasets",
        "rule_metrics",
        "judges",
        "judge_failures",
        "checkpoint_selection",
        "generation",
        "image_control",
    }
)


@dataclass(frozen=True)
class MetricValue:
    """One score with its 95% interval (``low``/``high`` are ``None`` when the file has none) and its n."""

    value: float
    low: float | None = None
    high: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class MetricBlock:
    """A block of rule metrics: its ``n``, its scores (``accuracy``, ``token_f1``, ...), its sub-blocks
    (``closed``, ``open``, ``cvbench``, ``tasks``, a task name) and its text notes (``combined_rule``)."""

    n: int | None = None
    values: Mapping[str, MetricValue] = field(default_factory=dict)
    parts: Mapping[str, MetricBlock] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)

    def metric(self, name: str) -> MetricValue | None:
        return self.values.get(name)

    def part(self, name: str) -> MetricBlock | None:
        return self.parts.get(name)

    def lookup(self, dotted: str) -> float | None:
        """A dotted path to a score: ``rarl.accuracy``, ``closed.rarl.accuracy``,
        ``cvbench.tasks.Count.rarl.accuracy`` (metric names hold a dot themselves; ``n`` of a block counts
        too)."""
        parts = dotted.split(".")
        for cut in range(len(parts)):
            block: MetricBlock | None = self
            for part in parts[:cut]:
                block = block.part(part) if block is not None else None
            if block is None:
                return None
            name = ".".join(parts[cut:])
            if name == "n":
                return None if block.n is None else float(block.n)
            value = block.metric(name)
            if value is not None:
                return value.value
        return None

    def to_dict(self) -> dict[str, Any]:
        """The block as results.json stores it: ``name``, ``name_ci`` = [low, high], ``name_n`` when the
        metric's n is not the block's, sub-blocks as objects, notes as strings."""
        out: dict[str, Any] = {} if self.n is None else {"n": self.n}
        for name, metric in self.values.items():
            out[name] = metric.value
            if metric.low is not None or metric.high is not None:
                out[f"{name}_ci"] = [metric.low, metric.high]
            if metric.n is not None and metric.n != self.n:
                out[f"{name}_n"] = metric.n
        for name, part in self.parts.items():
            out[name] = part.to_dict()
        out.update(self.notes)
        return out

    def metric_names(self, prefix: str = "") -> list[str]:
        """Every dotted score name :meth:`lookup` answers (``n`` left out), in file order."""
        names = [f"{prefix}{name}" for name in self.values]
        for name, part in self.parts.items():
            names += part.metric_names(f"{prefix}{name}.")
        return names


@dataclass(frozen=True)
class RuleMetrics:
    """The rule metrics of a run: over all items and per dataset row label."""

    n: int | None = None
    bertscore_model: str | None = None
    intervals: Mapping[str, Any] = field(default_factory=dict)  # how the 95% intervals were computed
    families: Mapping[str, str] = field(default_factory=dict)  # what each metric family (prefix) means
    overall: MetricBlock | None = None
    datasets: Mapping[str, MetricBlock] = field(default_factory=dict)

    def block(self, dataset: str) -> MetricBlock | None:
        """The block of one dataset row, or of all items for the row ``"All"``."""
        return self.overall if dataset == "All" else self.datasets.get(dataset)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "bertscore_model": self.bertscore_model,
            "intervals": dict(self.intervals),
            "families": dict(self.families),
            "overall": self.overall.to_dict() if self.overall is not None else None,
            "datasets": {name: block.to_dict() for name, block in self.datasets.items()},
        }


@dataclass(frozen=True)
class JudgeBlock:
    """A judge's Reasoning % / Final % over a group; failed items count as 0 (``None``: none judged)."""

    n: int | None = None
    judged: int | None = None
    failed: int | None = None
    reasoning: float | None = None  # over reasoning_n items; None also when the prompt scores none ("n/a")
    final: float | None = None
    reasoning_n: int | None = None  # items whose reasoning the prompt scores (None in older files: all n)
    reasoning_ci: tuple[float, float] | None = None  # 95% Wilson interval in %, from the counts
    final_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("reasoning_ci", "final_ci"):
            if out[name] is None:
                del out[name]
            else:
                out[name] = list(out[name])
        return out


@dataclass(frozen=True)
class JudgeStats:
    """How a judge's run went: items, successes, failures, cache hits and HTTP requests."""

    n: int = 0
    ok: int = 0
    parse_errors: int = 0
    api_errors: int = 0
    cache_hits: int = 0
    requests: int = 0
    retries: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JudgeResults:
    """One judge's scores in a run."""

    name: str
    model: str | None = None
    prompt_version: str | None = None
    prompt: str | None = None  # the prompt's name (paper, rarl); None in files from before prompts had names
    overall: JudgeBlock | None = None
    datasets: Mapping[str, JudgeBlock] = field(default_factory=dict)
    stats: JudgeStats = field(default_factory=JudgeStats)
    base_url: str | None = None

    def block(self, dataset: str) -> JudgeBlock | None:
        return self.overall if dataset == "All" else self.datasets.get(dataset)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_url": self.base_url,
            "prompt": self.prompt,
            "prompt_version": self.prompt_version,
            "summary": {
                "datasets": {label: block.to_dict() for label, block in self.datasets.items()},
                "overall": self.overall.to_dict() if self.overall is not None else None,
            },
            "stats": self.stats.to_dict(),
        }


@dataclass(frozen=True)
class CheckpointScore:
    checkpoint: str
    step: int | None
    value: float | None
    n: int | None
    output_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CheckpointSelection:
    """How ``rarl eval --checkpoints`` chose the checkpoint whose results these are."""

    mode: str
    metric: str | None = None
    chosen: str | None = None
    results_of: str | None = None
    run_dir: str | None = None
    rule: str | None = None
    eval_splits: str | None = None
    checkpoints: tuple[CheckpointScore, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in ("mode", "run_dir", "metric", "rule", "eval_splits")}
        out["checkpoints"] = [row.to_dict() for row in self.checkpoints]
        out["chosen"] = self.chosen
        out["results_of"] = self.results_of
        return out


@dataclass(frozen=True)
class RunResults:
    """One run's ``results.json``. Every section is optional: older files and bare ones still load.

    ``generation``: how the predictions were made (counts, seconds, device), as the generator reported it;
    ``extra``: top-level fields of a file this version does not know, kept so a rewrite loses nothing.
    """

    model: str | None = None
    prompt: str | None = None
    n: int | None = None
    datasets: tuple[str, ...] = ()
    rule_metrics: RuleMetrics | None = None
    judges: Mapping[str, JudgeResults] = field(default_factory=dict)
    judge_failures: Mapping[str, str] = field(default_factory=dict)
    checkpoint_selection: CheckpointSelection | None = None
    generation: Mapping[str, Any] = field(default_factory=dict)
    image_control: str | None = None  # "blank" | "shuffled" for an image-control run (rarl.eval.controls)
    image_control_seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``results.json`` (empty sections left out)."""
        out: dict[str, Any] = {"model": self.model, "prompt": self.prompt, "n": self.n}
        out["datasets"] = list(self.datasets)
        if self.generation:
            out["generation"] = dict(self.generation)
        if self.image_control is not None:
            out["image_control"] = {"control": self.image_control, "seed": self.image_control_seed}
        if self.rule_metrics is not None:
            out["rule_metrics"] = self.rule_metrics.to_dict()
        out["judges"] = {name: judge.to_dict() for name, judge in self.judges.items()}
        if self.judge_failures:
            out["judge_failures"] = dict(self.judge_failures)
        if self.checkpoint_selection is not None:
            out["checkpoint_selection"] = self.checkpoint_selection.to_dict()
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @property
    def dataset_names(self) -> list[str]:
        """Dataset row labels: as listed, else those of the rule metrics."""
        if self.datasets:
            return list(self.datasets)
        return list(self.rule_metrics.datasets) if self.rule_metrics else []

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike[str] = "results.json") -> RunResults:
        return _Reader(str(path)).run(data)


def read_results_json(path: str | os.PathLike[str], hint: str = "") -> dict[str, Any]:
    """The JSON object of a ``results.json`` as written (``rarl judge`` merges into it); a file that is
    unreadable, truncated, not UTF-8 or not an object is a :class:`DataError` naming it (plus ``hint``)."""
    file = Path(path)
    suffix = f"; {hint}" if hint else ""
    try:
        data = json.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise DataError(str(file), None, None, f"cannot read ({exc.strerror or exc}){suffix}") from None
    except UnicodeDecodeError as exc:
        raise DataError(str(file), None, None, f"not UTF-8 text (byte {exc.start}){suffix}") from None
    except json.JSONDecodeError as exc:
        problem = f"invalid JSON ({exc.msg}, line {exc.lineno}){suffix}"
        raise DataError(str(file), None, None, problem) from None
    except RecursionError:
        raise DataError(str(file), None, None, f"invalid JSON (nested too deeply){suffix}") from None
    if not isinstance(data, dict):
        raise DataError(str(file), None, None, f"expected a JSON object, got {type(data).__name__}{suffix}")
    return data


def read_results(path: str | os.PathLike[str]) -> RunResults:
    """Read and type a ``results.json``; a bad file or value is a :class:`DataError` naming file and field."""
    file = Path(path)
    return RunResults.from_dict(read_results_json(file), file)


def _current_names(data: Mapping[str, Any]) -> tuple[Mapping[str, Any], dict[str, str]]:
    """A block with its :data:`LEGACY_NAMES` (and their ``_ci``) renamed unless the new name is there, and
    new name → the name in the file (errors name the field as written)."""
    renamed: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, item in data.items():
        stem = key[:-3] if key.endswith("_ci") else key
        new = key
        if stem in LEGACY_NAMES and LEGACY_NAMES[stem] not in data:
            new = LEGACY_NAMES[stem] + key[len(stem) :]
        renamed[new] = item
        written[new] = key
    return renamed, written


class _Reader:
    """Type checks with the dotted field name in every error."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> DataError:
        return DataError(self.path, None, where, problem)

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be an object (got {type(value).__name__})")
        return value

    def integer(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"must be an integer (got {value!r})")
        return value

    def number(self, value: Any, where: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.fail(where, f"must be a number (got {value!r})")
        return float(value)

    def text(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string (got {value!r})")
        return value

    def interval(self, value: Any, where: str) -> tuple[float | None, float | None]:
        if value is None:
            return None, None
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self.fail(where, f"must be [low, high] (got {value!r})")
        return self.number(value[0], f"{where}.0"), self.number(value[1], f"{where}.1")

    def pair(self, value: Any, where: str) -> tuple[float, float] | None:
        low, high = self.interval(value, where)
        return None if low is None or high is None else (low, high)

    def run(self, data: Any) -> RunResults:
        data = self.mapping(data, "(top level)")
        datasets = data.get("datasets")
        if datasets is not None and not isinstance(datasets, list):
            raise self.fail("datasets", f"must be a list (got {type(datasets).__name__})")
        judges = self.mapping(data.get("judges"), "judges")
        failures = self.mapping(data.get("judge_failures"), "judge_failures")
        control = self.mapping(data.get("image_control"), "image_control")
        return RunResults(
            model=self.text(data.get("model"), "model"),
            prompt=self.text(data.get("prompt"), "prompt"),
            n=self.integer(data.get("n"), "n"),
            datasets=tuple(str(name) for name in datasets or ()),
            rule_metrics=self.rule_metrics(data.get("rule_metrics")),
            judges={name: self.judge(name, info) for name, info in judges.items()},
            judge_failures={
                name: self.text(message, f"judge_failures.{name}") or "" for name, message in failures.items()
            },
            checkpoint_selection=self.selection(data.get("checkpoint_selection")),
            generation=dict(self.mapping(data.get("generation"), "generation")),
            image_control=self.text(control.get("control"), "image_control.control"),
            image_control_seed=self.integer(control.get("seed"), "image_control.seed"),
            extra={key: value for key, value in data.items() if key not in KNOWN_TOP_LEVEL},
        )

    def rule_metrics(self, value: Any) -> RuleMetrics | None:
        data = self.mapping(value, "rule_metrics")
        if not data:
            return None
        datasets = self.mapping(data.get("datasets"), "rule_metrics.datasets")
        overall = data.get("overall")
        return RuleMetrics(
            n=self.integer(data.get("n"), "rule_metrics.n"),
            bertscore_model=self.text(data.get("bertscore_model"), "rule_metrics.bertscore_model"),
            intervals=dict(self.mapping(data.get("intervals"), "rule_metrics.intervals")),
            families={
                str(k): str(v) for k, v in self.mapping(data.get("families"), "rule_metrics.families").items()
            },
            overall=None if overall is None else self.block(overall, "rule_metrics.overall"),
            datasets={
                name: self.block(block, f"rule_metrics.datasets.{name}") for name, block in datasets.items()
            },
        )

    def block(self, value: Any, where: str) -> MetricBlock:
        data, written = _current_names(self.mapping(value, where))
        n = self.integer(data.get("n"), f"{where}.n")
        values: dict[str, MetricValue] = {}
        parts: dict[str, MetricBlock] = {}
        notes: dict[str, str] = {}
        for key, item in data.items():
            if key == "n" or key.endswith("_ci") or item is None:
                continue
            if key.endswith("_n") and key[:-2] in data:  # the n of a metric some items leave out
                continue
            if isinstance(item, Mapping):
                parts[key] = self.block(item, f"{where}.{key}")
            elif isinstance(item, str) and (key.endswith("_rule") or key.endswith("_warning")):  # how made
                notes[key] = item
            else:
                number = self.number(item, f"{where}.{written[key]}")
                low, high = self.interval(data.get(f"{key}_ci"), f"{where}.{written.get(f'{key}_ci', key)}")
                own_n = self.integer(data.get(f"{key}_n"), f"{where}.{key}_n")
                values[key] = MetricValue(number, low, high, n if own_n is None else own_n)  # type: ignore[arg-type]
        return MetricBlock(n=n, values=values, parts=parts, notes=notes)

    def judge_block(self, value: Any, where: str) -> JudgeBlock:
        data = self.mapping(value, where)
        return JudgeBlock(
            **{
                name: self.integer(data.get(name), f"{where}.{name}")
                for name in ("n", "judged", "failed", "reasoning_n")
            },
            **{name: self.number(data.get(name), f"{where}.{name}") for name in ("reasoning", "final")},
            **{name: self.pair(data.get(name), f"{where}.{name}") for name in ("reasoning_ci", "final_ci")},
        )

    def judge(self, name: str, value: Any) -> JudgeResults:
        where = f"judges.{name}"
        data = self.mapping(value, where)
        summary = self.mapping(data.get("summary"), f"{where}.summary")
        datasets = self.mapping(summary.get("datasets"), f"{where}.summary.datasets")
        stats = self.mapping(data.get("stats"), f"{where}.stats")
        known = JudgeStats.__dataclass_fields__
        return JudgeResults(
            name=name,
            model=self.text(data.get("model"), f"{where}.model"),
            prompt_version=None if data.get("prompt_version") is None else str(data["prompt_version"]),
            prompt=self.text(data.get("prompt"), f"{where}.prompt"),
            base_url=self.text(data.get("base_url"), f"{where}.base_url"),
            overall=None
            if summary.get("overall") is None
            else self.judge_block(summary["overall"], f"{where}.summary.overall"),
            datasets={
                label: self.judge_block(block, f"{where}.summary.datasets.{label}")
                for label, block in datasets.items()
            },
            stats=JudgeStats(
                **{
                    key: self.integer(count, f"{where}.stats.{key}") or 0
                    for key, count in stats.items()
                    if key in known
                }
            ),
        )

    def selection(self, value: Any) -> CheckpointSelection | None:
        data = self.mapping(value, "checkpoint_selection")
        if not data:
            return None
        rows = data.get("checkpoints") or []
        if not isinstance(rows, list):
            raise self.fail("checkpoint_selection.checkpoints", "must be a list")
        scores = []
        for index, row in enumerate(rows):
            where = f"checkpoint_selection.checkpoints.{index}"
            row = self.mapping(row, where)
            scores.append(
                CheckpointScore(
                    checkpoint=self.text(row.get("checkpoint"), f"{where}.checkpoint") or "",
                    step=self.integer(row.get("step"), f"{where}.step"),
                    value=self.number(row.get("value"), f"{where}.value"),
                    n=self.integer(row.get("n"), f"{where}.n"),
                    output_dir=self.text(row.get("output_dir"), f"{where}.output_dir"),
                )
            )
        texts = {
            name: self.text(data.get(name), f"checkpoint_selection.{name}")
            for name in ("metric", "chosen", "results_of", "run_dir", "rule", "eval_splits")
        }
        return CheckpointSelection(
            mode=self.text(data.get("mode"), "checkpoint_selection.mode") or "",
            checkpoints=tuple(scores),
            **texts,
        )


__all__ = [
    "CheckpointScore",
    "CheckpointSelection",
    "JudgeBlock",
    "JudgeResults",
    "JudgeStats",
    "MetricBlock",
    "MetricValue",
    "RuleMetrics",
    "RunResults",
    "read_results",
]
