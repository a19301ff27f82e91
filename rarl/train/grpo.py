"""GRPO (+LoRA) through ``trl.GRPOTrainer``: the paper's RL, RL+LoRA and RARL setups.

Why a thin wrapper: TRL already implements GRPO for vision-language models (image column + conversational
prompt, group-normalised advantages, KL to the reference via ``beta``, clipping via ``epsilon``, weighted
reward functions). This module only maps :class:`~rarl.config.RunConfig` onto ``GRPOConfig``, attaches the
reward functions of :mod:`rarl.rewards`, LoRA from :func:`rarl.models.lora_config`, and the callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError
from rarl.train.callbacks import install_callbacks
from rarl.train.common import load_model_and_processor, peft_config_for, shared_training_args
from rarl.train.dataset import build_train_dataset, template_counts

if TYPE_CHECKING:
    from trl import GRPOTrainer

    from rarl.config import RunConfig
    from rarl.data.schema import Sample

log = logging.getLogger(__name__)


def check_group_sizes(config: RunConfig) -> None:
    """GRPO needs whole groups: batch × accumulation completions must split into num_generations groups."""
    train = config.train
    generation_batch = train.per_device_train_batch_size * train.gradient_accumulation_steps
    if generation_batch % train.num_generations != 0:
        raise UserError(
            f"train.per_device_train_batch_size × train.gradient_accumulation_steps = {generation_batch} "
            f"completions per generation round is not divisible by train.num_generations = "
            f"{train.num_generations}; GRPO compares completions within groups of the same prompt"
        )


def grpo_args(config: RunConfig, model: Any, weights: Sequence[float]) -> Any:
    """``trl.GRPOConfig`` from the run config."""
    from trl import GRPOConfig

    train = config.train
    generation_kwargs = None
    if train.min_completion_length:  # bench: fixed-length rollouts even when random weights emit EOS early
        generation_kwargs = {"min_new_tokens": train.min_completion_length}
    return GRPOConfig(
        **shared_training_args(config, model),
        num_generations=train.num_generations,
        max_completion_length=train.max_completion_length,
        beta=train.beta,
        epsilon=train.epsilon,
        temperature=train.temperature,
        reward_weights=list(weights),
        generation_kwargs=generation_kwargs,
        log_completions=train.log_completions,
        scale_rewards=train.scale_rewards,
        num_completions_to_print=0,
        remove_unused_columns=False,
    )


def build_grpo_trainer(
    config: RunConfig,
    train_samples: Sequence[Sample],
    model: Any = None,
    processor: Any = None,
    callbacks: list[Any] | None = None,
) -> GRPOTrainer:
    """A ready ``trl.GRPOTrainer`` for ``train_samples`` (model/processor loaded from config if not given)."""
    from trl import GRPOTrainer

    from rarl.rewards import build_reward_functions

    check_group_sizes(config)
    model, processor = load_model_and_processor(config, model, processor)
    dataset = build_train_dataset(train_samples, config.data, max_pixels=config.model.max_pixels)
    log.info("GRPO on %d samples; templates %s", len(dataset), template_counts(dataset))
    device = str(next(model.parameters()).device)
    funcs, weights = build_reward_functions(config.reward, device=device)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=grpo_args(config, model, weights),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=peft_config_for(config),
    )
    install_callbacks(trainer, callbacks)
    return trainer


__all__ = ["build_grpo_trainer", "check_group_sizes", "grpo_args"]
