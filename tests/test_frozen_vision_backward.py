"""No backward through the frozen vision tower (GRPO and SFT, LoRA, with and without checkpointing).

Oracle: a tensor hook on every vision-tower module's output fires exactly when backward computes a
gradient for it, so "vision nodes reached in backward" is counted by autograd itself, not inferred. The
LoRA gradients with the fix are compared with those of the same model and batch with the transformers
hooks left as they come (the waste the fix removes must not change any gradient).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from rarl.config import LoraSettings, RunConfig
from rarl.models import load_model, load_processor, lora_config, vision_tower
from rarl.models._checkpointing_hooks import CHECKED_TRANSFORMERS, restore_tower_embeddings


class VisionBackwardCounter:
    """Counts vision-module forwards and the gradients backward computes for their outputs."""

    def __init__(self, model) -> None:
        self.forwards = 0
        self.backward_nodes = 0
        self.handles = [m.register_forward_hook(self._forward) for m in vision_tower(model).modules()]

    def _forward(self, module, args, output) -> None:
        self.forwards += 1
        tensors = output if isinstance(output, tuple) else (output,)
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
                tensor.register_hook(self._backward)

    def _backward(self, grad) -> None:
        self.backward_nodes += 1

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _inputs(processor):
    from PIL import Image

    from rarl.prompts import inference_messages

    image = Image.new("RGB", (96, 96), (20, 20, 20))
    image.paste((230, 230, 230), (10, 30, 40, 60))
    text = processor.apply_chat_template(
        inference_messages("Is there an opacity?"), add_generation_prompt=True, tokenize=False
    )
    return processor(text=[text], images=[image], return_tensors="pt", padding=True)


def _config(model_config, output_dir: Path, method: str, checkpointing: bool) -> RunConfig:
    config = RunConfig(model=dataclasses.replace(model_config, gradient_checkpointing=checkpointing))
    config.train.method = method  # type: ignore[assignment]
    config.train.settings.update(
        output_dir=str(output_dir), max_steps=1, save_strategy="no", learning_rate=1e-2,
        per_device_train_batch_size=2, report_to=[],
    )  # fmt: skip
    if method == "grpo":
        config.train.grpo.update(num_generations=2, max_completion_length=6)
    return config.validate()


@pytest.mark.parametrize("method", ["grpo", "sft"])
@pytest.mark.parametrize("checkpointing", [True, False])
def test_training_step_never_runs_backward_through_the_frozen_vision_tower(
    tiny_model_config, tmp_path, method, checkpointing
):
    """One real TRL step (GRPO: generation disables and re-enables checkpointing in between)."""
    from rarl.data.synthetic import generate_samples
    from rarl.libconfig import library_configs
    from rarl.train.grpo import build_grpo_trainer
    from rarl.train.sft import build_sft_trainer

    config = _config(tiny_model_config, tmp_path / "run", method, checkpointing)
    build = build_grpo_trainer if method == "grpo" else build_sft_trainer
    trainer = build(config, library_configs(config), generate_samples(4, seed=3, split="train"))
    assert trainer.model.is_activation_checkpointing == checkpointing
    counter = VisionBackwardCounter(trainer.model)
    trainer.train()
    assert counter.forwards > 0, "the step must encode images"
    assert counter.backward_nodes == 0
    moved = [p for n, p in trainer.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert moved, "LoRA gradients must still flow"


def test_lora_gradients_equal_those_with_the_library_hooks(tiny_model_config):
    """Same weights, same batch: with the tower's hook (today's transformers/PEFT/TRL behaviour) backward
    reaches the vision tower; with the fix it does not, and every LoRA gradient is the same."""
    from peft import get_peft_model
    from transformers import __version__

    assert __version__.startswith(CHECKED_TRANSFORMERS), "re-check rarl/models/_checkpointing_hooks.py"
    config = dataclasses.replace(tiny_model_config, gradient_checkpointing=True)
    processor = load_processor(config)
    inputs = _inputs(processor)

    def grads(fixed: bool) -> tuple[dict[str, torch.Tensor], int]:
        torch.manual_seed(0)
        model = load_model(config, device="cpu")
        if not fixed:
            restore_tower_embeddings(vision_tower(model))
        peft_model = get_peft_model(model, lora_config(LoraSettings()))  # PEFT's prepare adds the hooks
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # non-zero B so that the A gradients are non-zero too
                torch.nn.init.normal_(param, std=0.02, generator=torch.Generator().manual_seed(len(name)))
        peft_model.enable_input_require_grads()  # as TRL's trainers do
        peft_model.base_model.model.gradient_checkpointing_enable({"use_reentrant": False})  # after rollout
        counter = VisionBackwardCounter(peft_model)
        peft_model(**inputs, labels=inputs["input_ids"]).loss.backward()
        counter.remove()
        lora = {n: p.grad.clone() for n, p in peft_model.named_parameters() if "lora_" in n}
        return lora, counter.backward_nodes

    fixed, fixed_nodes = grads(True)
    unfixed, unfixed_nodes = grads(False)
    assert unfixed_nodes > 0, "the library hooks no longer reach the tower: the fix may be obsolete"
    assert fixed_nodes == 0
    assert fixed.keys() == unfixed.keys() and len(fixed) > 0
    assert all(fixed[n].abs().sum() > 0 for n in fixed)
    for name in fixed:
        torch.testing.assert_close(fixed[name], unfixed[name], rtol=1e-5, atol=1e-7, msg=name)


def test_freezing_a_model_that_already_has_the_hooks_removes_the_towers(tiny_model_config):
    """A model handed to the trainers with checkpointing already on (hooks placed before the freeze)."""
    from peft import get_peft_model

    from rarl.models import freeze_vision_tower

    config = dataclasses.replace(tiny_model_config, gradient_checkpointing=True, freeze_vision=False)
    model = load_model(config, device="cpu")
    freeze_vision_tower(model)
    peft_model = get_peft_model(model, lora_config(LoraSettings()))
    counter = VisionBackwardCounter(peft_model)
    inputs = _inputs(load_processor(config))
    peft_model(**inputs, labels=inputs["input_ids"]).loss.backward()
    assert counter.forwards > 0 and counter.backward_nodes == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in peft_model.named_parameters())
