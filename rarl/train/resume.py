"""``rarl train --resume``: which checkpoint to continue from, and whether continuing is honest.

Why: a resumed run must be the same run. Its settings are compared with the ``provenance.json`` the run
recorded (:mod:`rarl.provenance`) before anything is written, so a changed learning rate or LoRA rank is
a one-line refusal instead of a silently different experiment or a state-dict traceback. A checkpoint cut
short by a crash or a full disk (no ``trainer_state.json``, which the trainer writes last, or a file that
is there but not whole: :func:`rarl.schema.rundir.incomplete_reason`) is skipped for the previous complete
one, and ``metrics.jsonl`` is cut back to the resumed step so no step is logged twice. A fresh run never
replaces a finished one: checkpoints or final weights in ``output_dir`` are refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError
from rarl.provenance import (
    PROVENANCE_FILE,
    as_recorded,
    check_same_settings,
    read_provenance,
    train_settings,
    train_settings_from_dict,
)
from rarl.schema.rundir import (
    WEIGHT_FILES,
    checkpoint_step,
    checkpoints,
    final_weights,
    incomplete_reason,
)

if TYPE_CHECKING:
    from rarl.config import RunConfig
    from rarl.schema.sample import Sample

log = logging.getLogger(__name__)


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint; newer incomplete ones are skipped with a log line each."""
    for checkpoint in reversed(checkpoints(output_dir)):
        reason = incomplete_reason(checkpoint)
        if reason is None:
            return checkpoint
        log.warning("%s is incomplete (%s); falling back to the previous checkpoint", checkpoint, reason)
    return None


def resume_target(output_dir: str | Path, resume: bool | str) -> str | None:
    """What to pass to ``trainer.train(resume_from_checkpoint=...)``.

    ``True`` means the newest complete checkpoint in ``output_dir`` (a clear error when there is none); a
    string is a checkpoint path that must be complete.
    """
    if not resume:
        return None
    if isinstance(resume, str):
        reason = incomplete_reason(Path(resume)) if Path(resume).is_dir() else "not a directory"
        if reason is not None:
            raise UserError(f"{resume}: not a complete checkpoint directory ({reason})")
        return resume
    found = last_complete_checkpoint(output_dir)
    if found is None:
        raise UserError(f"--resume: no checkpoint to resume from in {output_dir} (no complete checkpoint-*)")
    return str(found)


def check_fresh_output_dir(output_dir: str | Path, resume: bool | str) -> None:
    """Refuse to silently mix a new run into a directory that already holds a run's results.

    Checkpoints and a finished run's final weights both count: a run saved without checkpoints
    (``save_strategy: "no"``) would otherwise have its adapter, provenance and metrics replaced. An
    attempt that crashed before saving anything left no weights and may be started again. Resuming from
    a checkpoint of another run (``--resume-from``) starts a new run here, so the same holds.
    """
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise UserError(f"{output_dir}: output_dir is a file, not a directory; choose another output_dir")
    try:
        recorded = read_provenance(output_dir)
    except UserError:
        raise UserError(
            f"{Path(output_dir) / PROVENANCE_FILE}: unreadable provenance record, so what this directory "
            "holds cannot be checked; choose another output_dir"
        ) from None
    if recorded is not None and recorded.get("kind", "train") != "train":
        raise UserError(
            f"{output_dir} holds the outputs of a rarl {recorded['kind']} run (its {PROVENANCE_FILE}); "
            "choose another output_dir for training"
        )
    if resume is True or (isinstance(resume, str) and _inside(Path(resume), Path(output_dir))):
        return
    found = checkpoints(output_dir)
    if found:
        raise UserError(
            f"{output_dir} already holds checkpoints (latest {found[-1].name}); pass --resume to continue "
            "or choose another output_dir"
        )
    final = final_weights(output_dir)
    if final is not None:
        raise UserError(
            f"{output_dir} already holds a finished run ({final.name}); choose another output_dir, or "
            "delete that one to train it again"
        )


def _inside(checkpoint: Path, output_dir: Path) -> bool:
    return checkpoint.resolve().parent == output_dir.resolve()


def recorded_train_settings(run_dir: Path) -> dict[str, Any] | None:
    """The settings a run recorded: its provenance, else (older runs) its resolved_config.yaml."""
    recorded = read_provenance(run_dir)
    if recorded is not None:
        return recorded["settings"]
    resolved = run_dir / "resolved_config.yaml"
    if resolved.is_file():
        import yaml

        return train_settings_from_dict(yaml.safe_load(resolved.read_text(encoding="utf-8")) or {})
    return None


def check_resume_settings(config: RunConfig, checkpoint: str, samples: list[Sample] | None) -> dict[str, Any]:
    """Refuse (one line, before anything is written) to resume a run with other settings or data.

    Returns this run's settings (to record when the check passes).
    """
    current = train_settings(config, samples)
    run_dir = Path(checkpoint).parent
    recorded = recorded_train_settings(run_dir)
    # Records written before a fingerprint existed cannot be checked against it: compare the rest.
    later = ("data.train_fingerprint", "model.files")
    current_compared = {
        k: v for k, v in current.items() if recorded is None or k not in later or k in recorded
    }
    if recorded is not None:
        recorded, current_compared = with_trl_defaults(recorded, current_compared)
    check_same_settings(
        recorded,
        current_compared,
        what=f"the run in {run_dir}",
        fresh="resume with the recorded settings, or start a fresh run in another output_dir",
    )
    check_adapter_matches(config, Path(checkpoint))
    return current


def with_trl_defaults(
    recorded: dict[str, Any], current: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both settings with a ``train.<method>.<field>`` missing on one side filled in with TRL's default.

    Why: a TRL field left out of the YAML *is* TRL's default, so ``--resume train.grpo.temperature=1.0``
    (TRL's default) asks for the run as it was, and a real change reads "42 -> 43", not "(unset) -> 43".
    """
    from rarl import trl_schema

    def trl_default(key: str) -> Any:
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "train" or parts[1] not in trl_schema.METHODS:
            return dataclasses.MISSING
        if parts[2] not in trl_schema.field_names(parts[1]):
            return dataclasses.MISSING
        default = trl_schema.default_value(parts[1], parts[2])
        return dataclasses.MISSING if default is dataclasses.MISSING else as_recorded({"v": default})["v"]

    filled = [dict(recorded), dict(current)]
    for mine, other in ((filled[0], filled[1]), (filled[1], filled[0])):
        for key in set(other) - set(mine):
            default = trl_default(key)
            if default is not dataclasses.MISSING:
                mine[key] = default
    return filled[0], filled[1]


def check_adapter_matches(config: RunConfig, checkpoint: Path) -> None:
    """A checkpoint's LoRA shape must be the configured one (else loading it is a state-dict traceback)."""
    adapter_config = checkpoint / "adapter_config.json"
    if not config.lora.enabled:
        if adapter_config.is_file():
            raise UserError(
                f"{checkpoint} holds a LoRA adapter but lora.enabled is false; set lora.enabled=true"
            )
        return
    if not adapter_config.is_file():
        if any((checkpoint / name).is_file() for name in WEIGHT_FILES):
            raise UserError(f"{checkpoint} holds full-model weights but lora.enabled is true")
        return
    from rarl.models import lora_config

    saved = json.loads(adapter_config.read_text(encoding="utf-8"))
    expected = lora_config(config.lora)
    diffs = [
        f"lora.{name}: {saved.get(key)} -> {value}"
        for name, key, value in (("r", "r", expected.r), ("alpha", "lora_alpha", expected.lora_alpha))
        if saved.get(key) != value
    ]
    saved_targets = saved.get("target_modules")
    if saved_targets is not None and _as_pattern(saved_targets) != _as_pattern(expected.target_modules):
        diffs.append(f"lora.target_modules: {saved_targets} -> {expected.target_modules}")
    if diffs:
        raise UserError(
            f"{checkpoint}: its adapter was trained with other LoRA settings ({'; '.join(diffs)}); "
            "resume with the recorded settings, or start a fresh run in another output_dir"
        )


def _as_pattern(targets: Any) -> Any:
    """PEFT saves target_modules as a regex string or a list of names (order not meaningful)."""
    return targets if isinstance(targets, str) else sorted(targets)


__all__ = [
    "check_adapter_matches",
    "check_fresh_output_dir",
    "check_resume_settings",
    "checkpoint_step",
    "checkpoints",
    "incomplete_reason",
    "last_complete_checkpoint",
    "resume_target",
]
