"""PNG plots for reports: training reward curves and per-dataset scores.

Why: a table says where a run ended; the reward curve says whether GRPO learned at all (a flat total
reward, or a component stuck at 0, is the first thing to look at). matplotlib runs headless (Agg).
Training logs are read from a run's ``metrics.jsonl`` (written by rarl's trainer callback) or, for any
HF/TRL run, from ``trainer_state.json``'s ``log_history`` (the run directory or its latest checkpoint).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rarl.errors import UserError
from rarl.io import read_jsonl, read_text
from rarl.stats import Estimate

_COMPONENT = re.compile(r"^rewards/(.+)/mean$")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _checkpoint_number(path: Path) -> int:
    match = re.search(r"checkpoint-(\d+)$", path.parent.name)
    return int(match.group(1)) if match else -1


def read_training_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """Log events of a training run: ``metrics.jsonl`` if present, else the newest ``trainer_state.json``."""
    run = Path(run_dir)
    if run.is_file():
        candidates = [run]
    else:
        candidates = [run / "metrics.jsonl"] if (run / "metrics.jsonl").is_file() else []
        if not candidates:
            states = [run / "trainer_state.json"] if (run / "trainer_state.json").is_file() else []
            states += sorted(
                run.glob("checkpoint-*/trainer_state.json"), key=_checkpoint_number, reverse=True
            )
            candidates = states[:1]
    if not candidates:
        raise UserError(f"{run}: no metrics.jsonl or trainer_state.json (is this a training output dir?)")
    source = candidates[0]
    if source.suffix == ".jsonl":
        return list(read_jsonl(source, tolerate_truncated_tail=True))
    try:
        state = json.loads(read_text(source))  # not UTF-8: a DataError naming the file
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise UserError(f"{source}: invalid JSON (nested too deeply)") from None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise UserError(f"{source}: no log_history list")
    return [event for event in history if isinstance(event, dict)]


def reward_series(events: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """``{"reward": (steps, values), "<component>": ...}`` from GRPO log events (NaN/None skipped)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for event in events:
        step = event.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key, value in event.items():
            match = _COMPONENT.match(key)
            name = "reward" if key == "reward" else (match.group(1) if match else None)
            if name is None or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                continue
            xs, ys = series.setdefault(name, ([], []))
            xs.append(float(step))
            ys.append(float(value))
    return series


def plot_reward_curves(runs: dict[str, str | Path], out_path: str | Path) -> Path:
    """Total reward (left) and each reward component (right) against the training step, one line per run."""
    plt = _pyplot()
    fig, (ax_total, ax_parts) = plt.subplots(1, 2, figsize=(12, 4.5))
    plotted = 0
    for label, run_dir in runs.items():
        series = reward_series(read_training_log(run_dir))
        if "reward" in series:
            ax_total.plot(*series["reward"], marker=".", label=label)
            plotted += 1
        for name, (xs, ys) in sorted(series.items()):
            if name != "reward":
                ax_parts.plot(xs, ys, marker=".", label=f"{label}: {name}" if len(runs) > 1 else name)
                plotted += 1
    if not plotted:
        plt.close(fig)
        raise UserError(f"no reward values in the training logs of {', '.join(map(str, runs.values()))}")
    ax_total.set(title="Total reward", xlabel="step", ylabel="mean reward")
    ax_parts.set(title="Reward components", xlabel="step", ylabel="mean reward")
    for ax in (ax_total, ax_parts):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(plt, fig, out_path)


def plot_dataset_scores(
    datasets: Sequence[str],
    bars: dict[str, Sequence[Estimate | float | None]],
    out_path: str | Path,
    title: str,
    ylabel: str = "%",
) -> Path:
    """Grouped bars: one group per dataset, one bar per series (e.g. "run · judge Final %").

    Each bar carries its 95% interval as an error bar and its n as a label; a missing value is drawn as
    missing (no bar, an "n/a" mark), never as a bar of height 0 that reads as a score of 0.
    """
    plt = _pyplot()
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(datasets) * max(1, len(bars)) ** 0.5 + 3), 4.5))
    for index, (name, values) in enumerate(bars.items()):
        xs = [i + (index - (len(bars) - 1) / 2) * width for i in range(len(datasets))]
        points = [
            (x, value if isinstance(value, Estimate) else Estimate(value))
            for x, value in zip(xs, values, strict=True)
        ]
        present = [(x, est) for x, est in points if est.value is not None]
        color = f"C{index % 10}"  # matplotlib's default colour cycle, one colour per series
        ax.bar(
            [x for x, _ in present], [est.value for _, est in present], width=width, label=name, color=color
        )
        with_ci = [(x, est) for x, est in present if est.low is not None and est.high is not None]
        if with_ci:
            ax.errorbar(
                [x for x, _ in with_ci],
                [est.value for _, est in with_ci],
                yerr=[
                    [est.value - est.low for _, est in with_ci],
                    [est.high - est.value for _, est in with_ci],
                ],
                fmt="none",
                ecolor="black",
                elinewidth=1,
                capsize=3,
            )
        for x, est in present:
            if est.n is not None:
                top = est.high if est.high is not None else est.value
                ax.annotate(
                    f"n={est.n}",
                    (x, top),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        for x, est in points:
            if est.value is None:
                ax.annotate(
                    "n/a",
                    (x, 0),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="grey",
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    ax.set_xticks(range(len(datasets)), list(datasets), rotation=20, ha="right")
    ax.set(title=title, ylabel=ylabel)
    ax.set_ylim(0, 108 if ylabel == "%" else None)  # headroom for the n labels above 100 %
    ax.grid(axis="y", alpha=0.3)
    if bars:  # beside the axes, so it never hides a bar
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(plt, fig, out_path)


def _save(plt: Any, fig: Any, out_path: str | Path) -> Path:
    """Lay out, write the PNG (creating its folder) and free the figure."""
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


__all__ = ["plot_dataset_scores", "plot_reward_curves", "read_training_log", "reward_series"]
