"""SFT through ``trl.SFTTrainer`` on ``<think>reasoning</think><answer>answer</answer>`` targets.

Why: the paper's SFT baseline, and the warm-up that teaches the output format before GRPO (a model that
never emits ``<answer>`` gets no accuracy signal to learn from). Loss is on the completion only, the
prompt being the same templated user turn GRPO sees, with the image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rarl.train.callbacks import install_callbacks
from rarl.train.common import load_model_and_processor, peft_config_for, shared_training_args
from rarl.train.dataset import build_train_dataset, template_counts

if TYPE_CHECKING:
    from trl import SFTTrainer

    from rarl.config import RunConfig
    from rarl.data.schema import Sample

log = logging.getLogger(__name__)


def sft_args(config: RunConfig, model: Any) -> Any:
    """``trl.SFTConfig`` from the run config.

    ``max_length=None``: truncating a VLM sequence could cut image tokens and break the model's input.
    """
    from trl import SFTConfig

    return SFTConfig(
        **shared_training_args(config, model),
        max_length=None,
        completion_only_loss=True,
        remove_unused_columns=False,
    )


def build_sft_trainer(
    config: RunConfig,
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
        args=sft_args(config, model),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config_for(config),
    )
    install_callbacks(trainer, callbacks)
    return trainer


__all__ = ["build_sft_trainer", "sft_args"]
