"""SFT through ``trl.SFTTrainer`` on ``<think>reasoning</think><answer>answer</answer>`` targets.

Why: the paper's SFT baseline, and the warm-up that teaches the output format before GRPO (a model that
never emits ``<answer>`` gets no accuracy signal to learn from). Loss is on the completion only, the
prompt being the same templated user turn GRPO sees, with the image. The ``SFTConfig`` arrives built from
``train.sft`` (:func:`rarl.libconfig.library_configs`); rarl's defaults there keep the whole sequence
(``max_length: null``: truncation could cut image tokens) and put the loss on the completion only
(``completion_only_loss: true``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rarl.train.callbacks import install_callbacks
from rarl.train.common import load_model_and_processor
from rarl.train.dataset import build_train_dataset, template_counts

if TYPE_CHECKING:
    from trl import SFTTrainer

    from rarl.config import RunConfig
    from rarl.libconfig import LibraryConfigs
    from rarl.schema.sample import Sample

log = logging.getLogger(__name__)


def build_sft_trainer(
    config: RunConfig,
    built: LibraryConfigs,
    train_samples: Sequence[Sample],
    model: Any = None,
    processor: Any = None,
    callbacks: list[Any] | None = None,
) -> SFTTrainer:
    """A ready ``trl.SFTTrainer`` on the samples' reasoning + answer targets."""
    from trl import SFTTrainer

    model, processor = load_model_and_processor(config, model, processor)
    dataset = build_train_dataset(
        train_samples, config.data, with_completion=True, max_pixels=config.model.max_pixels
    )
    log.info("SFT on %d samples; templates %s", len(dataset), template_counts(dataset))
    trainer = SFTTrainer(
        model=model,
        args=built.args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=built.lora,
    )
    install_callbacks(trainer, callbacks)
    return trainer


__all__ = ["build_sft_trainer"]
