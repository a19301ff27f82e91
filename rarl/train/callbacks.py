"""Trainer callbacks: a metrics JSONL beside the checkpoints and a compact console progress bar.

Why: TensorBoard (``report_to``) is good for curves, but a plain ``metrics.jsonl`` in the output directory
is what scripts, tests and the demo read back, and it survives a crash line by line (appends, and a torn
last line is tolerated by :func:`rarl.io.read_jsonl`); on resume it is cut back to the checkpoint's step
(:func:`cut_metrics_back`) so no step appears twice. The console shows one progress bar whose postfix
carries the numbers that tell whether GRPO is working: the total reward, each reward component,
``frac_reward_zero_std`` (groups that teach nothing) and the completion length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from rarl.io import append_jsonl, atomic_write_text, has_torn_tail, json_line, read_jsonl

METRICS_FILE = "metrics.jsonl"

# Console names for the keys TRL logs (GRPO) and transformers logs (SFT).
_SHORT_NAMES = {
    "reward": "reward",
    "frac_reward_zero_std": "zero_std",
    "completions/mean_length": "len",
    "loss": "loss",
    "mean_token_accuracy": "tok_acc",
}


def _clean(value: Any) -> Any:
    """JSON-safe scalar: NaN/inf become None (a reward TRL skipped everywhere logs NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsJsonlCallback(TrainerCallback):
    """Append every log event (``{"step", "epoch", **logs}``) to ``<output_dir>/metrics.jsonl``."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if not logs or not state.is_world_process_zero:
            return
        path = self.path or Path(args.output_dir) / METRICS_FILE
        record = {"step": state.global_step, "epoch": _clean(state.epoch)}
        record.update({key: _clean(value) for key, value in logs.items() if isinstance(value, (int, float))})
        append_jsonl(path, [record])


def cut_metrics_back(path: str | Path, step: int) -> int:
    """Drop the rows logged after ``step`` (resuming from that checkpoint redoes those steps).

    Without this a resumed run logs steps 5, 6 again after the 5, 6 logged before the crash, and the
    curves draw them twice. Returns the number of rows removed.
    """
    target = Path(path)
    if not target.is_file():
        return 0
    rows = list(read_jsonl(target, tolerate_truncated_tail=True))
    kept = [row for row in rows if isinstance(row.get("step"), int) and row["step"] <= step]
    if len(kept) != len(rows) or has_torn_tail(target):
        atomic_write_text(target, "".join(json_line(row) + "\n" for row in kept))
    return len(rows) - len(kept)


def console_summary(logs: dict[str, Any]) -> dict[str, str]:
    """The few numbers worth watching, formatted for a progress-bar postfix."""
    summary: dict[str, str] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if key in _SHORT_NAMES:
            name = _SHORT_NAMES[key]
        elif key.startswith("rewards/") and key.endswith("/mean"):
            name = key[len("rewards/") : -len("/mean")].removesuffix("_reward")
        else:
            continue
        summary[name] = "nan" if not math.isfinite(float(value)) else f"{float(value):.3g}"
    return summary


class CompactProgressCallback(ProgressCallback):
    """transformers' tqdm bar, but logs go to the bar's postfix instead of a printed dict per step."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        summary = console_summary(logs)
        if summary:
            self.training_bar.set_postfix(summary, refresh=False)
        if "train_runtime" in logs:  # the end-of-training summary is worth a line of its own
            self.training_bar.write(
                f"done: {state.global_step} steps in {logs['train_runtime']:.1f}s "
                f"(train_loss {logs.get('train_loss', float('nan')):.4g})"
            )


def install_callbacks(trainer: Any, extra: list[Any] | None = None) -> None:
    """Swap the default progress printer for the compact one and add the metrics JSONL writer."""
    if not trainer.args.disable_tqdm:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(CompactProgressCallback())
    trainer.add_callback(MetricsJsonlCallback())
    for callback in extra or []:
        trainer.add_callback(callback)


__all__ = [
    "METRICS_FILE",
    "CompactProgressCallback",
    "MetricsJsonlCallback",
    "console_summary",
    "cut_metrics_back",
    "install_callbacks",
]
