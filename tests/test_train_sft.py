"""SFT + LoRA through TRL on <think>/<answer> targets, driven through the ``rarl train`` CLI."""

from __future__ import annotations

import json

import yaml

from rarl.cli import main
from rarl.io import read_jsonl


def _write_config(path, model_dir, output_dir, max_steps: int) -> None:
    config = {
        "model": {"name_or_path": str(model_dir), "dtype": "float32", "max_pixels": 112 * 112},
        "data": {"train": [{"source": "synthetic", "num_samples": 8, "seed": 5}]},
        "train": {
            "method": "sft",
            "sft": {
                "output_dir": str(output_dir),
                "max_steps": max_steps,
                "save_steps": 2,
                "learning_rate": 1e-2,
                "per_device_train_batch_size": 4,
                "report_to": [],
            },
        },
    }
    path.write_text("# rarl train --config " + str(path) + "\n" + yaml.safe_dump(config), encoding="utf-8")


def test_sft_lora_cli_two_steps_then_resume(tiny_model_dir, tmp_path, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "sft"
    config_path = tmp_path / "sft.yaml"
    _write_config(config_path, tiny_model_dir, out, max_steps=2)
    assert main(["train", "--config", str(config_path)]) == 0
    assert "2 steps" in capsys.readouterr().out

    adapter = load_file(str(out / "checkpoint-2" / "adapter_model.safetensors"))
    assert adapter, "no adapter tensors"
    assert all(".visual." not in name for name in adapter), "LoRA must not touch the vision tower"
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in adapter.items())
    assert json.loads((out / "checkpoint-2" / "adapter_config.json").read_text())["lora_alpha"] == 16
    # SFT with LoRA saves only the adapter: the base (and vision) weights are the untouched checkpoint
    assert not (out / "model.safetensors").exists()
    losses = [r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)

    # without --resume an existing run is not overwritten; with it, training continues to step 4
    assert main(["train", "--config", str(config_path), "train.sft.max_steps=4"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--config", str(config_path), "train.sft.max_steps=4", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert (out / "checkpoint-4" / "adapter_model.safetensors").is_file()
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_sft_targets_and_template_diversity():
    from rarl.config import DataConfig
    from rarl.data.synthetic import generate_samples
    from rarl.train.dataset import build_rows, sft_target, template_names

    samples = generate_samples(60, seed=0, split="train")
    target = sft_target(samples[0])
    assert target.startswith("<think>") and target.endswith(f"<answer>{samples[0].answer}</answer>")
    assert samples[0].reasoning in target

    diverse = template_names(samples, DataConfig(seed=1))
    assert set(diverse) == {"explanation", "short", "open_ended"}
    assert diverse == template_names(samples, DataConfig(seed=1))  # seeded: stable across calls
    assert diverse != template_names(samples, DataConfig(seed=2))
    only_short = template_names(samples, DataConfig(template_ratios={"short": 1.0, "explanation": 0.0}))
    assert set(only_short) == {"short"}
    plain = template_names(samples, DataConfig(prompt_diversity=False, single_template="open_ended"))
    assert set(plain) == {"open_ended"}

    rows = build_rows(samples[:2], DataConfig(), with_completion=True)
    assert rows[0]["prompt"][0]["role"] == "user" and samples[0].question in rows[0]["prompt"][0]["content"]
    assert rows[0]["completion"][0]["content"] == target
    assert rows[0]["image"].mode == "RGB"
    assert {"answer", "question_type", "reasoning", "choices"} <= set(rows[0])
