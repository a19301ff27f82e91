"""Run directories: the files of an evaluation run and the checkpoints of a training run.

Why here, at the bottom: ``rarl eval`` writes the evaluation files, while ``rarl judge``, ``rarl review``
and ``rarl report`` read them; ``rarl train`` writes ``checkpoint-N`` directories, which training (resume)
and evaluation (``--checkpoints``) both read. Naming them once below all of those lets each read a run
directory without importing the pipeline that wrote it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rarl.errors import UserError
from rarl.io import json_file_problem, torch_file_problem, weights_file_problem
from rarl.schema.predictions import read_predictions as read_validated
from rarl.schema.records import PredictionRecord

PREDICTIONS_FILE = "predictions.jsonl"
RESULTS_FILE = "results.json"
RESULTS_MD = "results.md"
JUDGEMENTS_DIR = "judgements"
PART_GLOB = "predictions.part-*-of-*.jsonl"


def read_predictions(path: str | Path) -> list[PredictionRecord]:
    """Validated records of a predictions file of one run (see :mod:`rarl.schema.predictions`; a
    truncated last line, left by an interruption, is ignored)."""
    return read_validated(path, one_model=True, tolerate_truncated_tail=True)


# --------------------------------------------------------------------------------------------------
# training run directories

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` directories of a run, oldest (smallest N) first."""
    directory = Path(output_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.match(p.name).group(1)))  # type: ignore[union-attr]


def checkpoint_step(checkpoint: str | Path) -> int:
    """The global step a checkpoint was saved at (from its name)."""
    match = _CHECKPOINT.match(Path(checkpoint).name)
    if match is None:
        raise UserError(f"{checkpoint}: not a checkpoint-N directory")
    return int(match.group(1))


def final_weights(output_dir: str | Path) -> Path | None:
    """The final model or adapter a finished training run saved in its ``output_dir`` (None if none)."""
    for name in (*WEIGHT_FILES, "adapter_config.json"):
        path = Path(output_dir) / name
        if path.is_file():
            return path
    return None


# What ``trainer.train(resume_from_checkpoint=...)`` loads besides the weights; the optimizer and scheduler
# states are loaded here as the trainer loads them (the RNG state needs transformers' own allow-list).
TRAINER_STATE_GLOBS = {"optimizer.pt": True, "scheduler.pt": True, "scaler.pt": True, "rng_state*.pth": False}


def incomplete_reason(checkpoint: Path, *, resumable: bool = True) -> str | None:
    """Why a checkpoint cannot be used (None when it is complete).

    Every file that will be loaded is checked, not only named: a crash or a full disk can leave a file
    that exists but is cut short. ``resumable`` adds the optimizer, scheduler and RNG state that resuming
    training loads; evaluating a checkpoint needs only its weights.
    """
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "unreadable trainer_state.json"
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES):
        return "no model or adapter weights"
    problem = weights_problem(checkpoint)
    if problem is None and resumable:
        for pattern, load in TRAINER_STATE_GLOBS.items():
            for path in sorted(checkpoint.glob(pattern)):
                reason = torch_file_problem(path, load=load)
                if reason is not None:
                    return f"{path.name} {reason}"
    return problem


def weights_problem(folder: Path) -> str | None:
    """Why the weights (and adapter or model config) in ``folder`` are not whole; None when they are."""
    for name in ("adapter_config.json", "config.json"):
        if (folder / name).is_file():
            reason = json_file_problem(folder / name)
            if reason is not None:
                return f"{name} {reason}"
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        reason = weights_file_problem(path)
        if reason is not None:
            return f"{name} {reason}"
    return None


__all__ = [
    "JUDGEMENTS_DIR",
    "PART_GLOB",
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "RESULTS_MD",
    "WEIGHT_FILES",
    "checkpoint_step",
    "checkpoints",
    "final_weights",
    "incomplete_reason",
    "read_predictions",
    "weights_problem",
]
