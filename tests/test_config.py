"""Config: YAML + overrides + validation + the resolved config saved beside outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rarl.config import RunConfig, dump_config, load_config, save_config, to_dict
from rarl.errors import UserError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_follow_the_paper() -> None:
    config = load_config()
    assert config.model.name_or_path == "Qwen/Qwen2-VL-2B-Instruct"
    assert (config.lora.r, config.lora.alpha) == (8, 16)
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert config.train.grpo["save_steps"] == 100
    assert config.reward.names == ["format", "length", "accuracy", "reasoning"]


def test_yaml_merges_over_defaults_and_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  grpo:\n    beta: 0.1\n    max_steps: 7\nlora:\n  r: 16\n")
    config = load_config(
        path,
        [
            "train.grpo.beta=0.02",
            "lora.enabled=false",
            "reward.names=[format,accuracy]",
            "reward.weights=[1,2]",
        ],
    )
    assert config.train.grpo["beta"] == 0.02
    assert config.train.grpo["max_steps"] == 7  # from YAML
    assert config.lora.r == 16
    assert config.lora.alpha == 16  # untouched default survives a partial section
    assert config.lora.enabled is False
    assert config.reward.names == ["format", "accuracy"]
    assert config.reward.weights == [1.0, 2.0]


def test_list_items_are_dataclasses_and_indexable_by_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data:\n  train:\n    - {source: vqa_rad, path: /data/vqarad, limit: 500}\n"
        "judges:\n  - {name: a, model: m1}\n  - {name: b, model: m2}\n",
    )
    config = load_config(path, ["data.train.0.limit=1000", "judges.1.model=local-llm"])
    assert config.data.train[0].source == "vqa_rad"
    assert config.data.train[0].limit == 1000
    assert config.data.train[0].seed == 0  # default filled in for list items
    assert [j.model for j in config.judges] == ["m1", "local-llm"]


def test_unknown_key_names_the_key_and_lists_valid_options(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  grpo:\n    bta: 0.1\n")
    with pytest.raises(UserError, match=r"train\.grpo\.bta: trl\.GRPOConfig has no such field.*beta"):
        load_config(path)
    with pytest.raises(UserError, match=r"unknown config key 'lora\.rank'.*valid keys here:.*alpha"):
        load_config(None, ["lora.rank=4"])


def test_invalid_choice_lists_options() -> None:
    with pytest.raises(UserError, match=r"model\.attn_implementation: invalid value 'flash'.*sdpa"):
        load_config(None, ["model.attn_implementation=flash"])
    with pytest.raises(UserError, match=r"data\.train\.0\.source: invalid value 'mimic'.*vqa_rad"):
        load_config(None, ["data.train.0.source=mimic"])


def test_wrong_types_are_rejected() -> None:
    with pytest.raises(UserError, match=r"train\.grpo\.max_steps: expected int"):
        load_config(None, ["train.grpo.max_steps=many"])
    with pytest.raises(UserError, match=r"lora\.enabled: expected true or false"):
        load_config(None, ["lora.enabled=maybe"])


def test_cross_field_validation() -> None:
    with pytest.raises(UserError, match="one weight per reward"):
        load_config(None, ["reward.weights=[1.0]"])
    with pytest.raises(UserError, match=r"train\.grpo: trl\.GRPOConfig rejects .*at least 2 generations"):
        load_config(None, ["train.grpo.num_generations=1"])


def test_bad_yaml_and_missing_file_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = write(tmp_path, "train:\n  beta: [0.1\n")
    with pytest.raises(UserError, match=r"invalid YAML \(line \d+, column \d+\)"):
        load_config(bad)
    with pytest.raises(UserError, match=r"must look like key\.path=value"):
        load_config(None, ["train.beta"])


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["train.grpo.beta=0.5", "data.train.0.column_map={q: question}"])
    saved = save_config(config, tmp_path / "out")
    assert saved.name == "resolved_config.yaml"
    reloaded = load_config(saved)
    assert to_dict(reloaded) == to_dict(config)
    assert yaml.safe_load(dump_config(config))["train"]["grpo"]["beta"] == 0.5


def test_free_mappings_replace_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  template_ratios: {explanation: 1.0}\n")
    assert load_config(path).data.template_ratios == {"explanation": 1.0}
    bad = write(tmp_path, "data:\n  template_ratios: {verbose: 1.0}\n")
    with pytest.raises(UserError, match="unknown template"):
        load_config(bad)


def test_default_instance_is_valid() -> None:
    assert RunConfig().validate() is not None
