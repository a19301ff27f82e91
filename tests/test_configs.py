"""Every preset in configs/ loads and validates, names the command that runs it, and means what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from rarl.config import load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_presets_exist():
    names = {path.stem for path in CONFIGS}
    required = {
        "sft_qwen2vl_2b",
        "rl_full_qwen2vl_2b",
        "rl_lora_qwen2vl_2b",
        "rarl_qwen2vl_2b",
        "cvbench_500",
        "cvbench_1000",
        "cvbench_5000",
        "demo_tiny_sft",
        "demo_tiny_grpo",
    }
    assert required <= names, sorted(required - names)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_first_line_is_its_command(path: Path):
    config = load_config(path)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# rarl "), first
    assert f"configs/{path.name}" in first
    if first.startswith("# rarl train"):
        assert config.train.output_dir.startswith("outputs/")


def test_paper_setups_differ_where_the_paper_says():
    def cfg(name):
        return load_config(CONFIG_DIR / f"{name}.yaml")

    sft, rl_full, rl_lora, rarl = (
        cfg(n) for n in ("sft_qwen2vl_2b", "rl_full_qwen2vl_2b", "rl_lora_qwen2vl_2b", "rarl_qwen2vl_2b")
    )
    for config in (sft, rl_full, rl_lora, rarl):
        assert config.model.name_or_path == "Qwen/Qwen2-VL-2B-Instruct"
        assert config.model.freeze_vision
        assert (config.lora.r, config.lora.alpha) == (8, 16)
        assert sorted(config.lora.target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert sft.train.method == "sft"
    assert rl_full.train.method == rl_lora.train.method == rarl.train.method == "grpo"
    assert not rl_full.lora.enabled and rl_lora.lora.enabled and rarl.lora.enabled
    assert "reasoning" in rarl.reward.names and rarl.data.prompt_diversity
    for baseline in (sft, rl_full, rl_lora):
        assert "reasoning" not in baseline.reward.names and not baseline.data.prompt_diversity
    assert rarl.train.save_steps == 100


@pytest.mark.parametrize("size", [500, 1000, 5000])
def test_cvbench_subsets(size: int):
    config = load_config(CONFIG_DIR / f"cvbench_{size}.yaml")
    (spec,) = config.data.train
    assert (spec.source, spec.limit) == ("cvbench", size)
