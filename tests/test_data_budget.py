"""Token-budget pre-flight: image-token counts match the real processor; bad budgets stop before the model.

Oracle for the counts: the Qwen2-VL processor itself (the tiny model's), which expands the image placeholder
into exactly as many ``<|image_pad|>`` tokens as the vision tower will produce features.
"""

from __future__ import annotations

import pytest
from PIL import Image

from rarl.config import DatasetSpec, ModelConfig, RunConfig
from rarl.data.budget import image_tokens, load_token_counter, preflight, sample_tokens
from rarl.data.images import load_image
from rarl.data.synthetic import generate_samples
from rarl.errors import UserError
from rarl.schema.sample import Sample


def _config(model: ModelConfig, **eval_settings) -> RunConfig:
    config = RunConfig(model=model)
    for key, value in eval_settings.items():
        setattr(config.eval, key, value)
    return config


@pytest.mark.parametrize("size", [(112, 112), (500, 331), (1200, 90), (30, 40)])
def test_image_tokens_match_the_processor(tiny_model_dir, size):
    from rarl.models import load_processor

    model = ModelConfig(name_or_path=str(tiny_model_dir), max_pixels=224 * 224)
    processor = load_processor(model)
    image = load_image(Image.new("RGB", size, (90, 90, 90)), max_pixels=model.max_pixels)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = processor(text=[text], images=[image], return_tensors="pt")["input_ids"][0].tolist()
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert image_tokens(*size, model.min_pixels, model.max_pixels) == ids.count(pad)
    # the whole prompt estimate (image + text + chat markup) never under-counts the real input
    config = _config(model)
    count, how = load_token_counter(config, processor)
    sample = Sample("s", image, "Where?", "here", "open")
    [need] = sample_tokens([sample], config, "eval", count)
    assert how == "tokenizer" and need.prompt_tokens >= len(ids)


def test_eval_refused_when_generation_would_overrun_the_context(tiny_model_config):
    samples = generate_samples(3, seed=0, split="test")
    for sample in samples:
        sample.dataset = "synthetic"
    config = _config(tiny_model_config, max_new_tokens=4096)  # the tiny model's context is 4096
    with pytest.raises(UserError) as info:
        preflight(config, samples, "eval")
    message = str(info.value)
    assert "synthetic/test sample" in message and "> model context (max_position_embeddings) 4096" in message
    assert "4096 max_new_tokens tokens" in message and "3 of 3 samples over" in message
    summary = preflight(_config(tiny_model_config, max_new_tokens=64), samples, "eval")
    assert summary["max_total_tokens"] <= 4096 and summary["samples"] == 3


def test_train_refused_when_image_tokens_alone_exceed_the_limit(tiny_model_dir):
    """A 2000x2000 image under a 4-megapixel budget needs ~5,100 tokens: truncation would cut image tokens."""
    model = ModelConfig(name_or_path=str(tiny_model_dir), max_pixels=2000 * 2000)
    config = RunConfig(model=model)
    config.train.max_completion_length = 16
    big = Sample("big-1", Image.new("RGB", (2000, 2000)), "What is shown?", "a square", "open", dataset="x")
    big.split = "train"
    with pytest.raises(
        UserError, match=r"x/train sample big-1: 5041 image \+ \d+ text \+ 16 completion tokens"
    ):
        preflight(config, [big], "train")
    config.model.max_pixels = 448 * 448
    assert preflight(config, [big], "train")["max_image_tokens"] == 256


def test_sft_max_length_from_the_train_section_is_checked(tiny_model_config):
    """TRL's SFTConfig.max_length truncates the end of the sequence, i.e. the answer: refuse."""
    config = RunConfig(model=tiny_model_config)
    config.train.method = "sft"
    config.train.sft = {"max_length": 40}  # wherever the train section keeps TRL's settings
    samples = generate_samples(2, seed=0)
    with pytest.raises(UserError, match=r"SFT target tokens = \d+ > train.sft.max_length 40"):
        preflight(config, samples, "train")


def test_text_only_samples_refused_for_training():
    sample = Sample("q1", None, "Is this benign?", "yes", "closed", dataset="pathvqa", split="train")
    with pytest.raises(UserError, match=r"pathvqa/train: 1 of 1 samples have no image"):
        preflight(RunConfig(), [sample], "train")


def test_rarl_eval_stops_before_loading_the_model(tmp_path, tiny_model_config, monkeypatch, capsys):
    import yaml

    import rarl.models
    from rarl.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("the model must not load when the budget check fails")

    monkeypatch.setattr(rarl.models, "load_model", no_model)
    config = {
        "model": {"name_or_path": tiny_model_config.name_or_path, "max_pixels": 112 * 112},
        "data": {"eval": [vars(DatasetSpec(split="test", num_samples=4))]},
        "eval": {"output_dir": str(tmp_path / "eval"), "max_new_tokens": 5000, "bertscore": False},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(path), "--no-judges"]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]  # one line
    assert line.startswith("rarl eval: error: token budget: synthetic/test sample")


def test_training_refuses_text_only_data_before_building_the_trainer(tmp_path, monkeypatch):
    import rarl.train.run as run

    def no_trainer(*args, **kwargs):
        raise AssertionError("the trainer (and its model) must not be built for text-only data")

    monkeypatch.setattr(run, "build_trainer", no_trainer)
    config = RunConfig()
    config.train.grpo["output_dir"] = str(tmp_path / "run")
    sample = Sample("train_0001-1", None, "What is present?", "necrosis", "open", dataset="pathvqa")
    sample.split = "train"
    with pytest.raises(UserError, match=r"pathvqa/train: 1 of 1 samples have no image"):
        run.run_training(config, samples=[sample])


def test_an_image_the_processor_refuses_is_a_one_line_error_naming_the_sample(tiny_model_config):
    """Qwen2-VL's processor raises on an aspect ratio over 200: the pre-flight says so before any model."""
    from rarl.models import load_processor

    thin = Image.new("RGB", (5, 1100))
    processor = load_processor(tiny_model_config)
    with pytest.raises(ValueError, match="aspect ratio"):  # the processor itself
        processor.image_processor(images=[thin])
    sample = Sample("thin-1", thin, "What is shown?", "a line", "open", dataset="x")
    sample.split = "test"
    with pytest.raises(UserError, match=r"^x/test sample thin-1: .*5x1100.*aspect ratio"):
        preflight(_config(tiny_model_config, max_new_tokens=8), [sample], "eval")
