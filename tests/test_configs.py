"""Every preset in configs/ loads and validates, names the command that runs it, and means what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from rarl.config import load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CONFIGS = sorted([*CONFIG_DIR.glob("*.yaml"), *CONFIG_DIR.glob("demo/*.yaml")])


def test_presets_exist():
    names = {path.relative_to(CONFIG_DIR).with_suffix("").as_posix() for path in CONFIGS}
    required = {
        "sft_qwen2vl_2b",
        "rl_full_qwen2vl_2b",
        "rl_lora_qwen2vl_2b",
        "rarl_qwen2vl_2b",
        "cvbench_500",
        "cvbench_1000",
        "cvbench_5000",
        "demo/format_warmup",
        "demo/sft",
        "demo/rl_lora",
        "demo/rarl",
        "demo/eval",
    }
    assert required <= names, sorted(required - names)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.relative_to(CONFIG_DIR).as_posix() for p in CONFIGS])
def test_config_loads_and_first_line_is_its_command(path: Path):
    config = load_config(path)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# rarl "), first
    assert f"configs/{path.relative_to(CONFIG_DIR).as_posix()}" in first
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


PAPER_PRESETS = [
    "rl_full_qwen2vl_2b",
    "rl_lora_qwen2vl_2b",
    "rarl_qwen2vl_2b",
    "cvbench_500",
    "cvbench_1000",
    "cvbench_5000",
]


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_set_the_papers_objective_explicitly(name: str):
    """The paper's GRPO (eq. 1-3), written out rather than left to TRL's defaults (TRL 1.16: dapo)."""
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    text = (CONFIG_DIR / f"{name}.yaml").read_text(encoding="utf-8")
    grpo = config.train.grpo
    assert config.train.method == "grpo"
    expected = {
        "loss_type": "grpo",
        "scale_rewards": "group",
        "beta": 0.04,
        "epsilon": 0.2,
        "use_bias_correction_kl": False,
        "num_train_epochs": 5,
        "save_steps": 100,
    }
    for key, value in expected.items():
        assert grpo[key] == value, key
        assert f"    {key}: " in text, f"{key} is not written in {name}.yaml"
    assert config.model.freeze_vision
    assert (config.lora.r, config.lora.alpha) == (8, 16)
    assert sorted(config.lora.target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert config.lora.enabled == (name != "rl_full_qwen2vl_2b")


@pytest.mark.parametrize("size", [500, 1000, 5000])
def test_cvbench_subsets(size: int):
    config = load_config(CONFIG_DIR / f"cvbench_{size}.yaml")
    (spec,) = config.data.train
    assert (spec.source, spec.limit) == ("cvbench", size)
