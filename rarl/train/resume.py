"""``rarl train --resume``: which checkpoint to continue from, and whether continuing is honest.

Why: a resumed run must be the same run. Its settings are compared with the ``provenance.json`` the run
recorded (:mod:`rarl.provenance`) before anything is written, so a changed learning rate or LoRA rank is
a one-line refusal instead of a silently different experiment or a state-dict traceback. A checkpoint cut
short by a crash (no ``trainer_state.json``, which the trainer writes last, or no weights) is skipped for
the previous complete one, and ``metrics.jsonl`` is cut back to the resumed step so no step is logged
twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError
from rarl.provenance import (
    as_recorded,
    check_same_settings,
    read_provenance,
    train_settings,
    train_settings_from_dict,
)
from rarl.schema.rundir import WEIGHT_FILES, checkpoint_step, checkpoints, incomplete_reason

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
    """Refuse to silently mix a new run into a directory that already holds checkpoints."""
    if resume:
        return
    found = checkpoints(output_dir)
    if found:
        raise UserError(
            f"{output_dir} already holds checkpoints (latest {found[-1].name}); pass --resume to continue "
            "or choose another output_dir"
        )


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
    if recorded is not None and "data.train_fingerprint" not in recorded:
        current_compared = {k: v for k, v in current.items() if k != "data.train_fingerprint"}
    else:
        current_compared = current
    if recorded is not None:
        recorded, current_compared = with_trl_defaults(recorded), with_trl_defaults(current_compared)
    check_same_settings(
        recorded,
        current_compared,
        what=f"the run in {run_dir}",
        fresh="resume with the recorded settings, or start a fresh run in another output_dir",
    )
    check_adapter_matches(config, Path(checkpoint))
    return current


def with_trl_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with each ``train.<method>.<field>`` at TRL's own default dropped.

    Why: a TRL field left out of the YAML *is* TRL's default, so ``--resume train.grpo.temperature=1.0``
    (TRL's default) asks for the run as it was; comparing keys literally called that "(unset) -> 1.0".
    """
    from rarl import trl_schema

    out = {}
    for key, value in settings.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "train" and parts[1] in trl_schema.METHODS:
            default = (
                trl_schema.default_value(parts[1], parts[2])
                if parts[2] in trl_schema.field_names(parts[1])
                else dataclasses.MISSING
            )
            if default is not dataclasses.MISSING and as_recorded({"v": default})["v"] == value:
                continue
        out[key] = value
    return out


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
