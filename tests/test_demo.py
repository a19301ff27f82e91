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
    assert grpo.train.grpo["per_device_train_batch_size"] % grpo.train.grpo["num_generations"] == 0
    assert sft.model.freeze_vision and grpo.model.freeze_vision
    assert grpo.train.output_dir != sft.train.output_dir


def test_demo_rejects_bad_step_counts(capsys):
    from rarl.cli import main

    assert main(["demo", "--grpo-steps", "0"]) == 2
    assert "--grpo-steps" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One full `rarl demo` run (default settings, seed 0) shared by the slow checks below."""
    from rarl.cli import main

    out = tmp_path_factory.mktemp("demo")
    code = main(["demo", "--output-dir", str(out)])
    return code, out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_demo_learns(demo_run):
    """Held-out accuracy far above chance after training; the mean GRPO reward rises; outputs exist."""
    code, out, results = demo_run
    assert code == 0
    acc = results["accuracy"]
    chance = results["chance"]["overall"]
    assert acc["untrained"]["overall"] < chance  # the untrained model does not even answer in format
    assert acc["sft_grpo"]["n"] == results["setup"]["n_test"]
    assert acc["sft"]["overall"] >= chance + 0.2
    assert acc["sft_grpo"]["overall"] >= chance + 0.2
    assert results["grpo_mean_reward"]["last"] > results["grpo_mean_reward"]["first"]
    assert (out / "grpo" / "metrics.jsonl").is_file() and (out / "sft" / "resolved_config.yaml").is_file()


@pytest.mark.slow
def test_demo_grpo_beats_sft(demo_run):
    """GRPO after the warm-up raises greedy held-out accuracy above the warm-up alone (seed 0, 1 thread)."""
    _, _, results = demo_run
    acc = results["accuracy"]
    assert acc["sft_grpo"]["overall"] > acc["sft"]["overall"]
