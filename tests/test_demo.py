"""`rarl demo`: the offline demo must show learning, not just run (fixed seed, default settings)."""

from __future__ import annotations

import json

import pytest


def test_demo_settings_map_onto_valid_configs(tmp_path):
    from rarl.train.demo import DemoSettings, demo_config

    settings = DemoSettings(output_dir=str(tmp_path))
    sft = demo_config(settings, "model-dir", "sft")
    grpo = demo_config(settings, "model-dir", "grpo")
    assert (sft.train.method, grpo.train.method) == ("sft", "grpo")
    assert grpo.train.per_device_train_batch_size % grpo.train.num_generations == 0
    assert sft.model.freeze_vision and grpo.model.freeze_vision
    assert grpo.train.output_dir != sft.train.output_dir


def test_demo_rejects_bad_step_counts(capsys):
    from rarl.cli import main

    assert main(["demo", "--grpo-steps", "0"]) == 2
    assert "--grpo-steps" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_learns(tmp_path, capsys):
    """Held-out accuracy: SFT+GRPO > SFT alone, far above chance; mean GRPO reward rises."""
    from rarl.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SFT + GRPO" in printed and "chance" in printed

    results = json.loads((out / "results.json").read_text())
    acc = results["accuracy"]
    chance = results["chance"]["overall"]
    assert acc["sft_grpo"]["n"] == results["setup"]["n_test"]
    assert acc["sft_grpo"]["overall"] > acc["sft"]["overall"]
    assert acc["sft_grpo"]["overall"] >= chance + 0.2
    assert results["grpo_mean_reward"]["last"] > results["grpo_mean_reward"]["first"]
    assert all(results["learned"].values())
    assert (out / "grpo" / "metrics.jsonl").is_file() and (out / "sft" / "resolved_config.yaml").is_file()
