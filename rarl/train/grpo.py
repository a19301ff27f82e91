"""GRPO (+LoRA) through ``trl.GRPOTrainer``: the paper's RL, RL+LoRA and RARL setups.

Why a thin wrapper: TRL already implements GRPO for vision-language models (image column + conversational
prompt, group-normalised advantages, KL to the reference via ``beta``, clipping via ``epsilon``, weighted
reward functions). The ``GRPOConfig`` and ``LoraConfig`` arrive built
(:func:`rarl.libconfig.library_configs`); this module attaches the reward functions of :mod:`rarl.rewards`
and the callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rarl.train.callbacks import install_callbacks
from rarl.train.common import load_model_and_processor
from rarl.train.dataset import build_train_dataset, template_counts

if TYPE_CHECKING:
    from trl import GRPOTrainer

    from rarl.config import RunConfig
    from rarl.libconfig import LibraryConfigs
    from rarl.schema.sample import Sample

log = logging.getLogger(__name__)


def build_grpo_trainer(
    config: RunConfig,
    built: LibraryConfigs,
    train_samples: Sequence[Sample],
    model: Any = None,
    processor: Any = None,
    callbacks: list[Any] | None = None,
) -> GRPOTrainer:
    """A ready ``trl.GRPOTrainer`` for ``train_samples`` (model/processor loaded from config if not given)."""
    from trl import GRPOTrainer

    from rarl.rewards import build_reward_functions

    model, processor = load_model_and_processor(config, model, processor)
    dataset = build_train_dataset(train_samples, config.data, max_pixels=config.model.max_pixels)
    log.info("GRPO on %d samples; templates %s", len(dataset), template_counts(dataset))
    device = str(next(model.parameters()).device)
    funcs, _weights = build_reward_functions(config.reward, device=device)  # weights: in built.args
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=built.args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=built.lora,
    )
    install_callbacks(trainer, callbacks)
    return trainer


__all__ = ["build_grpo_trainer"]
