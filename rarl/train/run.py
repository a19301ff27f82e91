"""One training run from a :class:`~rarl.config.RunConfig`: what ``rarl train`` does.

Why a function rather than CLI code: the demo, the tests and users' notebooks run the same sequence —
load data, build the GRPO or SFT trainer, save the resolved config and provenance, train (optionally
resuming from the last complete checkpoint, after checking the settings are the run's own:
:mod:`rarl.train.resume`), save the final adapter (or full model) and processor in the run's ``output_dir``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.config import save_config
from rarl.data.budget import preflight
from rarl.libconfig import library_configs
from rarl.provenance import train_settings, write_provenance
from rarl.train.callbacks import METRICS_FILE, cut_metrics_back
from rarl.train.common import check_rollout_engine, load_train_samples, trainable_summary
from rarl.train.memory.preflight import memory_preflight
from rarl.train.resume import check_fresh_output_dir, check_resume_settings, checkpoint_step, resume_target

if TYPE_CHECKING:
    from rarl.config import RunConfig
    from rarl.libconfig import LibraryConfigs
    from rarl.schema.sample import Sample

log = logging.getLogger(__name__)


def build_trainer(
    config: RunConfig,
    built: LibraryConfigs,
    samples: list[Sample],
    model: Any = None,
    processor: Any = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """The TRL trainer for ``config.train.method`` (``grpo`` or ``sft``), from the built TRL/PEFT configs."""
    if config.train.method == "sft":
        from rarl.train.sft import build_sft_trainer

        return build_sft_trainer(config, built, samples, model, processor, callbacks)
    from rarl.train.grpo import build_grpo_trainer

    return build_grpo_trainer(config, built, samples, model, processor, callbacks)


def run_training(
    config: RunConfig,
    *,
    resume: bool | str = False,
    samples: list[Sample] | None = None,
    model: Any = None,
    processor: Any = None,
) -> dict[str, Any]:
    """Train and save; returns a small summary (steps, runtime, final directory, resumed-from).

    ``config`` is validated (``load_config``, or ``validate()`` for a config built in code); here it becomes
    the libraries' objects, once, before data or a model loads, so TRL's rejections and a missing vLLM fail
    fast.
    """
    check_rollout_engine(config)
    built = library_configs(config)
    output_dir = Path(config.train.output_dir)
    check_fresh_output_dir(output_dir, resume)
    checkpoint = resume_target(output_dir, resume)
    samples = samples if samples is not None else load_train_samples(config)
    preflight(config, samples, "train", processor)  # images present, no truncation: before the model loads
    if os.environ.get("LOCAL_RANK", "0") == "0":  # one prediction per machine under accelerate launch
        memory_preflight(config)  # RARL_MEMORY_CHECK=1 on a GPU: warns when the step is predicted not to fit
    # A resume with other settings or data is refused here, before anything is written.
    if checkpoint:
        settings = check_resume_settings(config, checkpoint, samples)
    else:
        settings = train_settings(config, samples)
    trainer = build_trainer(config, built, samples, model, processor)
    # Under ``accelerate launch`` every process runs this; only the main one writes rarl's own files
    # (TRL/transformers already limit checkpoints, metrics and TensorBoard events to it).
    main_process = trainer.is_world_process_zero()
    if main_process:
        log.info("%s: %s", config.train.method.upper(), trainable_summary(trainer.model))
        output_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, output_dir)
        write_provenance(output_dir, "train", settings)
        # Rows logged after the checkpoint (or, for a fresh start, by an earlier attempt that saved no
        # checkpoint) are redone by this run: drop them so no step is logged twice.
        step = checkpoint_step(checkpoint) if checkpoint else 0
        dropped = cut_metrics_back(output_dir / METRICS_FILE, step)
        if dropped:
            log.info("%s: dropped %d rows logged after step %d", METRICS_FILE, dropped, step)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(output_dir))  # adapter files with LoRA, full weights without (main process only)
    if main_process:
        trainer.processing_class.save_pretrained(str(output_dir))
    return {
        "method": config.train.method,
        "global_step": trainer.state.global_step,
        "train_loss": result.training_loss,
        "runtime_s": round(time.time() - start, 2),
        "output_dir": str(output_dir),
        "resumed_from": checkpoint,
        "main_process": main_process,
        "trainer": trainer,
    }


__all__ = ["build_trainer", "run_training"]
