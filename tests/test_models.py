"""Models: the tiny offline Qwen2-VL, loading, save/load, LoRA placement and the frozen vision tower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from rarl.config import LoraSettings, ModelConfig
from rarl.errors import UserError
from rarl.models import (
    build_tiny_model,
    load_model,
    load_processor,
    lora_config,
    vision_tower,
)
from rarl.prompts import inference_messages


def scan_image() -> Image.Image:
    image = Image.new("RGB", (96, 96), (20, 20, 20))
    image.paste((230, 230, 230), (10, 30, 40, 60))
    return image


def model_inputs(processor, question: str = "Is there an opacity in the left lung?", image=None):
    text = processor.apply_chat_template(
        inference_messages(question), add_generation_prompt=True, tokenize=False
    )
    return processor(text=[text], images=[image or scan_image()], return_tensors="pt", padding=True)


def test_tiny_model_generates_from_image_and_question(tiny_model_config: ModelConfig) -> None:
    processor = load_processor(tiny_model_config)
    model = load_model(tiny_model_config, device="cpu")
    inputs = model_inputs(processor)
    image_token = model.config.image_token_id
    assert (inputs["input_ids"] == image_token).sum() > 0, "chat template must expand the image placeholder"
    output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    assert 1 <= new_tokens.shape[1] <= 6  # free length: generation stops at EOS or the limit
    assert torch.equal(output[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])  # prompt kept as is
    assert isinstance(processor.batch_decode(new_tokens)[0], str)
    # The picture reaches the language model: another image changes the next-token scores, the same
    # image gives the same scores.
    other = model_inputs(processor, image=Image.new("RGB", (96, 96), (200, 10, 10)))
    with torch.no_grad():
        scores = model(**inputs).logits[0, -1]
        again = model(**model_inputs(processor)).logits[0, -1]
        changed = model(**other).logits[0, -1]
    assert torch.equal(scores, again)
    assert not torch.allclose(scores, changed)


def test_tiny_model_is_deterministic_per_seed(tmp_path: Path, tiny_model_dir: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    reference = load_model(ModelConfig(name_or_path=str(tiny_model_dir), dtype="float32"), device="cpu")
    same = load_model(ModelConfig(name_or_path=str(again), dtype="float32"), device="cpu")
    different = load_model(ModelConfig(name_or_path=str(other), dtype="float32"), device="cpu")
    ref_state, same_state, diff_state = reference.state_dict(), same.state_dict(), different.state_dict()
    assert all(torch.equal(ref_state[k], same_state[k]) for k in ref_state)
    assert any(not torch.equal(ref_state[k], diff_state[k]) for k in ref_state)
    assert (tiny_model_dir / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()


def test_save_load_round_trip_keeps_outputs(tmp_path: Path, tiny_model_config: ModelConfig) -> None:
    processor = load_processor(tiny_model_config)
    model = load_model(tiny_model_config, device="cpu").eval()
    model.save_pretrained(tmp_path / "copy")
    processor.save_pretrained(tmp_path / "copy")
    copy_config = ModelConfig(name_or_path=str(tmp_path / "copy"), dtype="float32", max_pixels=112 * 112)
    reloaded = load_model(copy_config, device="cpu").eval()
    reloaded_processor = load_processor(copy_config)
    inputs = model_inputs(processor)
    assert torch.equal(inputs["input_ids"], model_inputs(reloaded_processor)["input_ids"])
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, reloaded(**inputs).logits, atol=1e-6)


def test_lora_attaches_only_to_language_model_and_vision_stays_frozen(tiny_model_config: ModelConfig) -> None:
    from peft import get_peft_model

    model = load_model(tiny_model_config, device="cpu")
    vision_before = {k: v.detach().clone() for k, v in vision_tower(model).state_dict().items()}
    peft_model = get_peft_model(model, lora_config(LoraSettings()))

    lora_modules = {name for name, _ in peft_model.named_modules() if name.endswith(".lora_A")}
    assert lora_modules, "LoRA attached nowhere"
    assert all("language_model" in name for name in lora_modules)
    projections = {name.split(".")[-2] for name in lora_modules}
    assert projections == {"q_proj", "k_proj", "v_proj", "o_proj"}
    num_layers = model.config.text_config.num_hidden_layers
    assert len(lora_modules) == 4 * num_layers
    lora_a = next(m for n, m in peft_model.named_modules() if n.endswith("q_proj.lora_A"))["default"]
    assert lora_a.weight.shape[0] == 8
    assert peft_model.peft_config["default"].lora_alpha == 16

    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    lora_before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}

    processor = load_processor(tiny_model_config)
    inputs = model_inputs(processor)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    loss = peft_model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    optimizer.step()

    vision_after = vision_tower(peft_model).state_dict()
    assert all(torch.equal(vision_before[k], vision_after[k]) for k in vision_before)
    assert all(not p.requires_grad for p in vision_tower(peft_model).parameters())
    changed = [
        n for n, p in peft_model.named_parameters() if n in lora_before and not torch.equal(lora_before[n], p)
    ]
    assert changed, "an optimiser step must move the LoRA weights"


def test_missing_model_path_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot load"):
        load_model(ModelConfig(name_or_path=str(tmp_path / "missing")), device="cpu")
