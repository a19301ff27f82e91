"""GRPO + LoRA on the tiny Qwen2-VL through TRL: what trains, what must not, checkpoints, resume, logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rarl.config import RunConfig
from rarl.errors import UserError
from rarl.io import read_jsonl


def _config(model_config, output_dir: Path, method: str = "grpo", max_steps: int = 2) -> RunConfig:
    config = RunConfig(model=model_config)
    config.train.method = method  # type: ignore[assignment]
    config.train.settings.update(
        output_dir=str(output_dir),
        max_steps=max_steps,
        save_steps=2,
        learning_rate=1e-2,  # large, so that two steps visibly move the adapter
        per_device_train_batch_size=4,
        report_to=[],
    )
    if method == "grpo":
        config.train.grpo.update(num_generations=2, max_completion_length=12)
    return config.validate()


def _samples(n: int = 8):
    from rarl.data.synthetic import generate_samples

    return generate_samples(n, seed=3, split="train")


def _base_name(peft_name: str) -> str:
    """PEFT parameter name -> the wrapped model's own name."""
    return peft_name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def check_lora_only_training(model, trainer) -> None:
    """LoRA weights moved; every base weight (vision tower included) is bit-identical."""
    lora_changed, base_checked, vision_checked = 0, 0, 0
    for name, param in trainer.model.named_parameters():
        if "lora_" in name:
            assert param.requires_grad, name
            continue
        before = model.__dict__["_snapshot"][_base_name(name)]
        assert torch.equal(param.detach().cpu(), before), f"base weight changed: {name}"
        base_checked += 1
        vision_checked += ".visual." in name
    for name, param in trainer.model.named_parameters():
        if "lora_B" in name:
            lora_changed += int(param.detach().abs().sum() > 0)  # lora_B starts at zero
    assert lora_changed > 0
    assert base_checked > 50 and vision_checked > 10
    assert not any(".visual." in n for n, _ in trainer.model.named_parameters() if "lora_" in n)


def _snapshot(model) -> None:
    model.__dict__["_snapshot"] = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}


def test_grpo_lora_two_steps_checkpoint_resume_and_logs(tiny_model_config, tmp_path):
    from rarl.models import load_model, load_processor
    from rarl.train.run import run_training

    out = tmp_path / "grpo"
    config = _config(tiny_model_config, out)
    model = load_model(config.model)
    processor = load_processor(config.model)
    _snapshot(model)
    summary = run_training(config, samples=_samples(), model=model, processor=processor)
    assert summary["global_step"] == 2
    check_lora_only_training(model, summary["trainer"])

    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert json.loads((checkpoint / "adapter_config.json").read_text())["r"] == 8
    assert (out / "adapter_model.safetensors").is_file()  # final adapter beside the checkpoints
    assert (out / "resolved_config.yaml").is_file()

    logged = list(read_jsonl(out / "metrics.jsonl"))
    step_logs = [r for r in logged if "reward" in r]
    assert [r["step"] for r in step_logs] == [1, 2]
    for key in (
        "rewards/format_reward/mean",
        "rewards/length_reward/mean",
        "rewards/accuracy_reward/mean",
        "rewards/reasoning_reward/mean",
        "frac_reward_zero_std",
        "completions/mean_length",
    ):
        assert key in step_logs[0], key
    assert 0 < step_logs[0]["completions/mean_length"] <= 12

    # a fresh run into a directory with checkpoints is refused; --resume continues from checkpoint-2
    with pytest.raises(UserError, match="--resume"):
        run_training(config, samples=_samples())
    resumed_config = _config(tiny_model_config, out, max_steps=3)
    summary = run_training(resumed_config, resume=True, samples=_samples())
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["global_step"] == 3
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "reward" in r]
    assert steps == [1, 2, 3]  # the resumed run did not redo steps 1-2


def test_grpo_rejects_partial_groups(tiny_model_config, tmp_path):
    from rarl.train.run import run_training

    config = _config(tiny_model_config, tmp_path / "x")
    config.train.grpo["num_generations"] = 3
    with pytest.raises(UserError, match=r"divisible by num_generations \(3\)"):
        run_training(config, samples=_samples())  # when TRL builds the GRPOConfig, before data or model
    assert not (tmp_path / "x").exists()


def test_resume_without_checkpoint_is_a_user_error(tiny_model_config, tmp_path):
    from rarl.train.run import run_training

    with pytest.raises(UserError, match="no checkpoint"):
        run_training(_config(tiny_model_config, tmp_path / "empty"), resume=True, samples=_samples())
