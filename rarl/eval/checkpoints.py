"""``rarl eval --checkpoints all|last|best``: evaluate a training run's checkpoints, pick one on validation.

Why: the paper saves a checkpoint every 100 steps "to capture peak performance". Picking that peak is
model selection, so it must happen on a validation split: choosing the best checkpoint by its test score
would report an optimistically biased test number. ``best`` therefore refuses an eval split named
``test``; ``all`` draws the curve (on any split) and chooses nothing; ``last`` evaluates only the newest
complete checkpoint.

Each checkpoint is an ordinary, resumable eval run in ``<eval.output_dir>/checkpoint-N/``. The directory
itself gets ``checkpoints.csv`` and ``checkpoints.png`` (the metric per checkpoint), and ``results.json``
/ ``results.md`` of the chosen checkpoint (the last one for ``all``) with a ``checkpoint_selection``
entry naming the metric, every checkpoint's value and the chosen checkpoint.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from rarl.config import RunConfig, save_config
from rarl.errors import UserError
from rarl.eval.harness import BUSY_HINT, run_evaluation, write_results
from rarl.eval.shard import Shard, current_shard
from rarl.io import atomic_write_text, directory_lock
from rarl.schema.results import CheckpointScore, CheckpointSelection, MetricBlock, RunResults

log = logging.getLogger(__name__)

MODES = ("all", "last", "best")
DEFAULT_METRIC = "rarl.accuracy"
CURVE_CSV = "checkpoints.csv"
CURVE_PNG = "checkpoints.png"


def run_checkpoints(run_dir: str | Path, mode: str) -> list[Path]:
    """The complete checkpoints of a training run to evaluate (all of them, or only the newest)."""
    from rarl.schema.rundir import checkpoints, incomplete_reason

    found = []
    for checkpoint in checkpoints(run_dir):
        reason = incomplete_reason(checkpoint, resumable=False)
        if reason is None:
            found.append(checkpoint)
        else:
            log.warning("%s is incomplete (%s); not evaluated", checkpoint, reason)
    if not found:
        raise UserError(
            f"{run_dir}: no complete checkpoint-* directory to evaluate "
            "(set --run, or output_dir under train.grpo / train.sft)"
        )
    return found[-1:] if mode == "last" else found


def check_selection_split(config: RunConfig, mode: str) -> None:
    """``best`` selects a model: only on validation data, never on a split named test."""
    if mode != "best":
        return
    for index, spec in enumerate(config.data.eval):
        if "test" in spec.split.lower():
            raise UserError(
                f"data.eval.{index}.split is {spec.split!r}: choosing the best checkpoint on test data "
                "biases the reported test score; select on a validation split (e.g. "
                f"data.eval.{index}.split=validation), then evaluate the chosen checkpoint on test"
            )


def metric_value(results: RunResults, metric: str) -> float | None:
    """A dotted path into the overall rule metrics: ``rarl.accuracy``, ``closed.rarl.accuracy``,
    ``open.rarl.token_f1``, ``official.bleu`` (the aggregation's numbers, as results.json holds them)."""
    overall = _overall_metrics(results)
    return overall.lookup(metric) if overall is not None else None


def _overall_metrics(results: RunResults) -> MetricBlock | None:
    rule = results.rule_metrics
    return rule.overall if rule is not None else None


def checkpoint_config(config: RunConfig, checkpoint: Path, out_dir: Path) -> RunConfig:
    """The eval config of one checkpoint: its LoRA adapter on the base model, or its full weights."""
    local = copy.deepcopy(config)
    if (checkpoint / "adapter_config.json").is_file():
        local.model.adapter_path = str(checkpoint)
    else:
        local.model.name_or_path = str(checkpoint)
        local.model.adapter_path = None
    local.eval.output_dir = str(out_dir / checkpoint.name)
    return local


def curve_csv(rows: list[dict[str, Any]], metric: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["checkpoint", "step", metric, "n"])
    for row in rows:
        writer.writerow([row["checkpoint"], row["step"], row["value"], row["n"]])
    return buffer.getvalue()


def plot_curve(rows: list[dict[str, Any]], metric: str, chosen: str | None, path: Path, splits: str) -> None:
    """The metric against the training step, the chosen checkpoint marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([row["step"] for row in rows], [row["value"] for row in rows], marker="o")
    for row in rows:
        if row["checkpoint"] == chosen:
            ax.scatter(
                [row["step"]], [row["value"]], s=120, facecolors="none", edgecolors="red", label=chosen
            )
            ax.legend()
    if len(rows) <= 20:
        ax.set_xticks([row["step"] for row in rows])
    ax.set_xlabel("training step (checkpoint)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per checkpoint on {splits}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def evaluate_checkpoints(
    config: RunConfig,
    run_dir: str | Path,
    mode: str = "best",
    *,
    metric: str = DEFAULT_METRIC,
    judges: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    shard: Shard | None = None,
) -> RunResults | None:
    """Evaluate the checkpoints of ``run_dir``; returns the top-level results (``None`` on non-main ranks).

    The top directory is locked for the whole selection (each ``checkpoint-N/`` also by its own run).
    """
    if mode not in MODES:
        raise UserError(f"--checkpoints {mode!r}; valid options: {', '.join(MODES)}")
    check_selection_split(config, mode)
    shard = shard or current_shard()
    out_dir = Path(config.eval.output_dir)
    with ExitStack() as held:
        if shard.is_main:
            held.enter_context(directory_lock(out_dir, hint=BUSY_HINT))
        return _evaluate_locked(config, run_dir, mode, metric, out_dir, judges, overwrite, progress, shard)


def _evaluate_locked(
    config: RunConfig,
    run_dir: str | Path,
    mode: str,
    metric: str,
    out_dir: Path,
    judges: bool,
    overwrite: bool,
    progress: bool,
    shard: Shard,
) -> RunResults | None:
    from rarl.schema.rundir import checkpoint_step

    targets = run_checkpoints(run_dir, mode)
    rows: list[dict[str, Any]] = []
    per_checkpoint: dict[str, RunResults] = {}
    for checkpoint in targets:
        log.info("evaluating %s", checkpoint)
        local = checkpoint_config(config, checkpoint, out_dir)
        results = run_evaluation(local, judges=judges, overwrite=overwrite, progress=progress, shard=shard)
        if results is None:  # a non-main process of a sharded run
            continue
        value = metric_value(results, metric)
        if value is None:
            raise UserError(
                f"--select-metric {metric!r} is not in the rule metrics of {checkpoint.name} "
                f"(available: {', '.join(_metric_names(results))})"
            )
        per_checkpoint[checkpoint.name] = results
        rows.append(
            {
                "checkpoint": checkpoint.name,
                "step": checkpoint_step(checkpoint),
                "value": value,
                "n": results.n,
                "output_dir": local.eval.output_dir,
            }
        )
    if not shard.is_main:
        return None
    if mode == "best":
        chosen: str | None = max(rows, key=lambda row: (row["value"], row["step"]))["checkpoint"]
    elif mode == "last":
        chosen = rows[-1]["checkpoint"]
    else:
        chosen = None
    splits = ", ".join(dict.fromkeys(f"{s.name or s.source}/{s.split}" for s in config.data.eval))
    atomic_write_text(out_dir / CURVE_CSV, curve_csv(rows, metric))
    plot_curve(rows, metric, chosen, out_dir / CURVE_PNG, splits)
    shown = chosen or rows[-1]["checkpoint"]
    selection = CheckpointSelection(
        mode=mode,
        run_dir=str(run_dir),
        metric=metric,
        rule="highest value; ties go to the later checkpoint" if mode == "best" else None,
        eval_splits=splits,
        checkpoints=tuple(CheckpointScore(**row) for row in rows),
        chosen=chosen,
        results_of=shown,
    )
    summary = replace(per_checkpoint[shown], checkpoint_selection=selection)
    write_results(out_dir, summary)
    save_config(config, out_dir)
    return summary


def _metric_names(results: RunResults) -> list[str]:
    overall = _overall_metrics(results)
    return overall.metric_names() if overall is not None else []


__all__ = [
    "CURVE_CSV",
    "CURVE_PNG",
    "MODES",
    "check_selection_split",
    "evaluate_checkpoints",
    "metric_value",
    "run_checkpoints",
]
