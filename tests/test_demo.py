"""`rarl demo`: the paper's recipe in miniature (SFT warm-up, then GRPO with a LoRA adapter), honestly scored.

The slow test asserts what is robust for any seed — far above chance after each stage, reward rising, the
adapter trained while the base weights stay put, interval fields present and consistent — not that GRPO
beats the warm-up by a margin on one seed (the paired interval says whether it did).
"""

from __future__ import annotations

import json

import pytest


def test_demo_settings_map_onto_valid_configs(tmp_path):
    from rarl.demo import PAPER_REWARDS, DemoSettings, demo_config

    settings = DemoSettings(output_dir=str(tmp_path))
    sft = demo_config(settings, "model-dir", "sft")
    grpo = demo_config(settings, "model-dir", "grpo")
    assert (sft.train.method, grpo.train.method) == ("sft", "grpo")
    assert grpo.train.grpo["per_device_train_batch_size"] % grpo.train.grpo["num_generations"] == 0
    assert sft.model.freeze_vision and grpo.model.freeze_vision
    assert grpo.train.output_dir != sft.train.output_dir
    # the paper's recipe: GRPO trains a LoRA adapter r=8, alpha=16 on q/k/v/o; the warm-up is full FT
    assert not sft.lora.enabled and grpo.lora.enabled
    assert (grpo.lora.r, grpo.lora.alpha) == (8, 16)
    assert set(grpo.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert dict(zip(grpo.reward.names, grpo.reward.weights, strict=True)) == PAPER_REWARDS
    assert set(PAPER_REWARDS) == {"format", "length", "accuracy", "reasoning"}
    assert grpo.train.grpo["max_steps"] == settings.grpo_train["max_steps"]


def test_demo_rejects_bad_arguments(capsys):
    from rarl.cli import main

    assert main(["demo", "--grpo-steps", "0"]) == 2
    assert "--grpo-steps" in capsys.readouterr().err
    assert main(["demo", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["demo", "--width", "40"]) == 2
    assert "--width" in capsys.readouterr().err


def test_adapter_check_sees_trained_lora_and_untouched_base(tiny_model_dir):
    """PEFT wraps the projections in place: the check maps base_layer names back and reads lora_B."""
    import torch
    from peft import get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    from rarl.config import LoraSettings
    from rarl.demo import adapter_check, snapshot_weights
    from rarl.models import lora_config

    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    before = snapshot_weights(model)
    peft_model = get_peft_model(model, lora_config(LoraSettings()))
    fresh = adapter_check(before, peft_model)
    assert fresh["lora_tensors"] == 2 * 2 * 4  # 2 layers x q/k/v/o x (A, B)
    assert not fresh["adapter_trained"] and fresh["base_weights_unchanged"] and fresh["only_lora_trainable"]
    assert fresh["vision_lora_tensors"] == 0
    with torch.no_grad():
        next(p for n, p in peft_model.named_parameters() if "lora_B" in n).add_(0.1)
        assert adapter_check(before, peft_model)["adapter_trained"]
        next(p for n, p in peft_model.named_parameters() if "base_layer" in n).add_(0.1)
    touched = adapter_check(before, peft_model)
    assert not touched["base_weights_unchanged"] and touched["base_max_abs_change"] == pytest.approx(0.1)


def test_compare_stages_and_seed_summary():
    scipy_stats = pytest.importorskip("scipy.stats")
    from rarl.demo import compare_stages, seed_summary, seeds_table

    before = {"correct": [1] * 50 + [0] * 30 + [1] * 4 + [0] * 12}
    after = {"correct": [1] * 50 + [0] * 30 + [0] * 4 + [1] * 12}
    result = compare_stages(before, after)
    assert result["n"] == 96 and result["difference"] == pytest.approx(8 / 96)
    assert (result["before_only_correct"], result["after_only_correct"]) == (4, 12)
    assert result["mcnemar_p"] == pytest.approx(scipy_stats.binomtest(4, 16).pvalue)
    assert result["ci"][0] < result["difference"] < result["ci"][1]

    def run(seed, sft, grpo):
        return {
            "setup": {"seed": seed},
            "chance": {"overall": 0.4},
            "accuracy": {
                s: {"overall": v} for s, v in (("untrained", 0.0), ("sft", sft), ("sft_grpo", grpo))
            },
            "grpo_vs_sft": {"difference": grpo - sft, "ci": [grpo - sft - 0.05, grpo - sft + 0.05]},
            "learned": {"reward_rises": True},
        }

    summary = seed_summary([run(0, 0.7, 0.8), run(1, 0.8, 0.78), run(2, 0.75, 0.85)])
    assert summary["accuracy"]["sft_grpo"]["mean"] == pytest.approx(0.81)
    assert summary["grpo_vs_sft_difference"]["sd"] == pytest.approx(
        float(__import__("numpy").std([0.1, -0.02, 0.1], ddof=1))
    )
    assert (summary["grpo_better_seeds"], summary["grpo_ci_above_zero_seeds"]) == (2, 2)
    assert "over 3 seeds" in seeds_table(summary)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One full `rarl demo` run (default settings, seed 0) shared by the slow checks below."""
    from rarl.cli import main

    out = tmp_path_factory.mktemp("demo")
    code = main(["demo", "--output-dir", str(out)])
    return code, out, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_demo_learns_with_a_lora_adapter(demo_run):
    """Far above chance after each stage; reward rises; the adapter trained and the base weights did not."""
    code, out, results = demo_run
    assert code == 0
    acc = results["accuracy"]
    chance = results["chance"]["overall"]
    assert acc["untrained"]["overall"] < chance  # the untrained model does not even answer in format
    assert acc["sft_grpo"]["n"] == results["setup"]["n_test"]
    for stage in ("sft", "sft_grpo"):
        assert acc[stage]["overall"] >= chance + 0.2
        assert acc[stage]["overall_ci"][0] > chance  # the whole interval is above chance
    assert results["grpo_mean_reward"]["last"] > results["grpo_mean_reward"]["first"]
    adapter = results["adapter"]
    assert adapter["adapter_trained"] and adapter["base_weights_unchanged"] and adapter["only_lora_trainable"]
    assert adapter["lora_tensors"] > 0 and adapter["vision_lora_tensors"] == 0 and adapter["saved"]
    assert (out / "grpo" / "adapter_config.json").is_file()
    assert not (out / "grpo" / "model.safetensors").exists()  # an adapter, not a full model
    assert (out / "grpo" / "metrics.jsonl").is_file() and (out / "sft" / "resolved_config.yaml").is_file()


@pytest.mark.slow
def test_demo_interval_fields_present_and_consistent(demo_run):
    scipy_stats = pytest.importorskip("scipy.stats")
    _, _, results = demo_run
    for stage, acc in results["accuracy"].items():
        n, k = acc["overall_n"], round(acc["overall"] * acc["overall_n"])
        ci = scipy_stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
        assert acc["overall_ci"] == pytest.approx([ci.low, ci.high]), stage
        assert acc["overall_n"] == acc["n"] and acc["closed_n"] + acc["open_n"] == acc["n"]
    diff = results["grpo_vs_sft"]
    assert diff["n"] == results["accuracy"]["sft"]["n"]
    assert diff["difference"] == pytest.approx(
        results["accuracy"]["sft_grpo"]["overall"] - results["accuracy"]["sft"]["overall"]
    )
    assert diff["ci"][0] <= diff["difference"] <= diff["ci"][1]
    discordant = diff["before_only_correct"] + diff["after_only_correct"]
    assert diff["after_only_correct"] - diff["before_only_correct"] == round(diff["difference"] * diff["n"])
    expected_p = (
        1.0 if discordant == 0 else scipy_stats.binomtest(diff["before_only_correct"], discordant).pvalue
    )
    assert diff["mcnemar_p"] == pytest.approx(expected_p)


def test_tiny_model_width_option_builds_a_wider_model_that_runs(tmp_path):
    """The width option (for LoRA capacity) keeps mrope consistent with the head size; default stays 64."""
    import inspect

    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from rarl.models import build_tiny_model

    assert inspect.signature(build_tiny_model).parameters["width"].default == 64
    path = build_tiny_model(tmp_path / "wide", seed=0, width=128)
    model = Qwen2VLForConditionalGeneration.from_pretrained(path)
    text = model.config.text_config
    assert (text.hidden_size, text.intermediate_size) == (128, 256)
    head_dim = text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
    with torch.no_grad():
        out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.logits.shape[-1] == text.vocab_size
    with pytest.raises(ValueError):
        build_tiny_model(tmp_path / "odd", width=40)


@pytest.mark.parametrize("method", ["sft", "grpo"])
def test_demo_yaml_presets_match_what_rarl_demo_runs(method):
    """configs/demo_tiny_*.yaml reproduce the demo's stages: same TRL settings, LoRA and rewards."""
    from pathlib import Path

    from rarl.config import load_config
    from rarl.demo import DemoSettings, demo_config

    root = Path(__file__).resolve().parents[1]
    preset = load_config(root / "configs" / f"demo_tiny_{method}.yaml")
    demo = demo_config(DemoSettings(), "model-dir", method)
    stage = DemoSettings().sft_train if method == "sft" else DemoSettings().grpo_train
    for name in stage:
        assert preset.train.settings[name] == demo.train.settings[name], name
    assert preset.lora.enabled == demo.lora.enabled
    assert preset.train.settings["seed"] == demo.train.settings["seed"]
    if method == "grpo":
        assert (preset.lora.r, preset.lora.alpha) == (demo.lora.r, demo.lora.alpha)
        assert (preset.reward.names, preset.reward.weights) == (demo.reward.names, demo.reward.weights)


def test_the_demo_does_not_delete_a_run_it_did_not_make(tmp_path, monkeypatch):
    """--output-dir pointed at a folder whose sft/ is a real training run: refused, the run kept."""
    import yaml

    import rarl.models
    from rarl.demo import DemoSettings, run_demo
    from rarl.errors import UserError

    run = tmp_path / "sft"
    run.mkdir()
    (run / "adapter_model.safetensors").write_bytes(b"weights")
    (run / "resolved_config.yaml").write_text(yaml.safe_dump({"model": {"name_or_path": "Qwen/Qwen2-VL-2B"}}))

    class Built(Exception):
        pass

    def no_build(*args, **kwargs):  # the refusal must come before anything is built or deleted
        raise Built

    monkeypatch.setattr(rarl.models, "build_tiny_model", no_build)
    with pytest.raises(UserError, match="holds a training run the demo did not make"):
        run_demo(DemoSettings(output_dir=str(tmp_path)))
    assert (run / "adapter_model.safetensors").read_bytes() == b"weights"
    # The demo's own earlier stage (its tiny model named in the resolved config) is replaced as before.
    (run / "resolved_config.yaml").write_text(
        yaml.safe_dump({"model": {"name_or_path": str(tmp_path / "tiny_model")}})
    )
    with pytest.raises(Built):
        run_demo(DemoSettings(output_dir=str(tmp_path)))
    assert not run.exists()
