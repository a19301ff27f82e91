"""The paper's objective, eq. (1)-(3), by hand, equals the loss TRL computes with the presets' settings.

RARL (arXiv 2506.06600) trains with DeepSeekMath's GRPO. For a group of G completions o_1..o_G of one prompt
with rewards r_1..r_G:

    (3)  A_i = (r_i - mean(r)) / std(r)                                  the group-normalised advantage
    (2)  rho_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)    the token-level importance ratio
    (1)  J = mean_i (1/|o_i|) sum_t [ min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta KL_it ]
         KL_it = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1               (the k3 estimator)

and the loss is -J. Below, that is written in plain torch from these equations; the policy's log-probs come
from our own forward pass of the model. Two choices the equations leave open are TRL's, stated here and in
docs/training.md: std is the unbiased (n-1) sample standard deviation, and 1e-4 is added to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rarl.compat import generate_and_score
from rarl.config import load_config

PRESET = Path(__file__).resolve().parent.parent / "configs" / "rarl_qwen2vl_2b.yaml"
G = 3  # completions per prompt
REWARDS = [1.0, 0.0, 0.5, 2.0, 2.0, -1.0]  # two groups of G, in TRL's order (prompt-major)
STD_GUARD = 1e-4  # TRL adds this to the std (a zero-variance group gets advantage 0, not NaN)


def fixed_reward(completions, **kwargs):
    """Known rewards regardless of the sampled text, so the advantages are known in advance."""
    return REWARDS[: len(completions)]


def _trainer(model_dir: Path, tmp_path: Path, extra: tuple[str, ...] = ()):
    from trl import GRPOTrainer

    from rarl.data.synthetic import generate_samples
    from rarl.libconfig import library_configs
    from rarl.models import load_model, load_processor
    from rarl.train.dataset import build_train_dataset

    overrides = [
        f"model.name_or_path={model_dir}",
        "model.dtype=float32",
        "model.max_pixels=12544",
        "model.gradient_checkpointing=false",
        "lora.dropout=0.0",  # dropout would make two forward passes of the same policy differ
        f"train.grpo.output_dir={tmp_path / 'run'}",
        f"train.grpo.per_device_train_batch_size={len(REWARDS)}",
        "train.grpo.gradient_accumulation_steps=1",
        f"train.grpo.num_generations={G}",
        "train.grpo.max_completion_length=8",
        "train.grpo.report_to=[]",
        "reward.names=[format]",  # one reward function (fixed_reward below), weight 1
        "reward.weights=[1.0]",
    ]
    config = load_config(PRESET, [*overrides, *extra])
    torch.manual_seed(0)
    model = load_model(config.model)
    processor = load_processor(config.model)
    built = library_configs(config)
    rows = build_train_dataset(generate_samples(2, seed=1), config.data, max_pixels=config.model.max_pixels)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[fixed_reward],
        args=built.args,
        train_dataset=rows,
        processing_class=processor,
        peft_config=built.lora,
    )
    trainer.current_gradient_accumulation_steps = 1  # what the training loop sets with no accumulation
    batch = [rows[0]] * G + [rows[1]] * G  # TRL's sampler repeats each prompt G times, prompt-major
    return config, trainer, batch


def _policy_logps(model, inputs) -> torch.Tensor:
    """log pi_theta(o_it | q, o_i<t) from a plain forward pass over prompt + completion (with the image)."""
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    image_token = model.config.image_token_id
    logits = model(
        input_ids=ids,
        attention_mask=mask,
        mm_token_type_ids=(ids == image_token).long(),  # which positions hold image tokens (M-RoPE)
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
    ).logits
    length = inputs["completion_ids"].shape[1]
    next_token_logits = logits[:, -length - 1 : -1, :].float()  # position t predicts token t+1
    logps = torch.log_softmax(next_token_logits, dim=-1)
    return logps.gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)


def paper_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    group_size: int,
    epsilon: float,
    beta: float,
) -> torch.Tensor:
    """-J of eq. (1)-(3), written from the equations (see the module docstring)."""
    groups = rewards.view(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True, unbiased=True)
    advantage = ((groups - mean) / (std + STD_GUARD)).view(-1, 1)  # (3), one value per completion
    ratio = torch.exp(logp - logp_old)  # (2)
    surrogate = torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantage)
    kl = torch.exp(logp_ref - logp) - (logp_ref - logp) - 1  # k3
    per_token = surrogate - beta * kl
    per_sequence = (per_token * mask).sum(dim=1) / mask.sum(dim=1)  # (1/|o_i|) sum_t
    return -per_sequence.mean()  # mean over the G completions of every group in the batch


def _prepared_batch(trainer, batch):
    """TRL's own generation + scoring (so TRL computes the advantages), then known old/ref log-probs and
    completions of different lengths (so per-sequence and per-token averaging differ)."""
    trainer.model.train()
    generator = torch.Generator().manual_seed(0)
    inputs = generate_and_score(trainer, batch)
    mask = inputs["completion_mask"].clone()
    width = mask.shape[1]
    lengths = torch.tensor([width, 2, width - 1, 3, width, 1])
    mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).to(mask.dtype)
    inputs["completion_mask"] = mask
    inputs["num_items_in_batch"] = mask.sum()
    with torch.no_grad():
        current = _policy_logps(trainer.model, inputs)
    shape = current.shape
    inputs["old_per_token_logps"] = current + 0.3 * torch.randn(shape, generator=generator)  # past policy
    inputs["ref_per_token_logps"] = current + 0.5 * torch.randn(shape, generator=generator)  # reference
    return inputs


def test_trl_loss_with_the_preset_equals_the_papers_equations(tiny_model_dir: Path, tmp_path: Path) -> None:
    config, trainer, batch = _trainer(tiny_model_dir, tmp_path)
    grpo = config.train.grpo
    assert (grpo["loss_type"], grpo["scale_rewards"], grpo["beta"], grpo["epsilon"]) == (
        "grpo",
        "group",
        0.04,
        0.2,
    )
    inputs = _prepared_batch(trainer, batch)

    rewards = torch.tensor(REWARDS)
    groups = rewards.view(-1, G)
    by_hand = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + STD_GUARD)
    torch.testing.assert_close(inputs["advantages"].float(), by_hand.view(-1), rtol=0, atol=1e-6)
    biased = (groups - groups.mean(1, keepdim=True)) / (
        groups.std(1, keepdim=True, unbiased=False) + STD_GUARD
    )
    assert not torch.allclose(inputs["advantages"].float(), biased.view(-1), atol=1e-3)  # TRL: unbiased std

    trl_loss = trainer.compute_loss(trainer.model, inputs)
    with torch.no_grad():
        logp = _policy_logps(trainer.model, inputs)
    expected = paper_loss(
        logp,
        inputs["old_per_token_logps"],
        inputs["ref_per_token_logps"],
        inputs["completion_mask"].float(),
        rewards,
        G,
        epsilon=grpo["epsilon"],
        beta=grpo["beta"],
    )
    assert trl_loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert abs(expected.item()) > 1e-3  # not a trivially zero loss
    # the loss is differentiable through the policy (it trains), and the clipping is active in this batch
    assert trl_loss.requires_grad
    ratio = torch.exp(logp - inputs["old_per_token_logps"])[inputs["completion_mask"].bool()]
    assert ((ratio < 0.8) | (ratio > 1.2)).any()

    # Under TRL's defaults the same batch gives another number: dapo averages over all tokens of the batch
    # (not per sequence), and the bias-corrected KL weights the KL term by the ratio.
    for extra in (("train.grpo.loss_type=dapo",), ("train.grpo.use_bias_correction_kl=true",)):
        _, other, other_batch = _trainer(tiny_model_dir, tmp_path / extra[0].split(".")[-1], extra)
        other_inputs = _prepared_batch(other, other_batch)
        other_loss = other.compute_loss(other.model, other_inputs)
        with torch.no_grad():
            other_logp = _policy_logps(other.model, other_inputs)
        other_expected = paper_loss(
            other_logp,
            other_inputs["old_per_token_logps"],
            other_inputs["ref_per_token_logps"],
            other_inputs["completion_mask"].float(),
            rewards,
            G,
            epsilon=grpo["epsilon"],
            beta=grpo["beta"],
        )
        assert other_loss.item() != pytest.approx(other_expected.item(), rel=1e-3, abs=1e-4), extra
