"""Config: YAML + overrides + validation + the resolved config saved beside outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from rarl.config import (
    JudgeConfig,
    RunConfig,
    collect_validation_errors,
    dump_config,
    load_config,
    save_config,
    to_dict,
)
from rarl.errors import UserError
from rarl.libconfig import library_configs


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
    with pytest.raises(UserError, match=r"train\.grpo\.max_steps: expected an integer"):
        load_config(None, ["train.grpo.max_steps=many"])
    with pytest.raises(UserError, match=r"lora\.enabled: expected true or false"):
        load_config(None, ["lora.enabled=maybe"])


def test_cross_field_validation() -> None:
    with pytest.raises(UserError, match="one weight per reward"):
        load_config(None, ["reward.weights=[1.0]"])
    # TRL's own rule, checked by TRL when the run's GRPOConfig is built (commands that train), not copied
    config = load_config(None, ["train.grpo.num_generations=1"])
    with pytest.raises(UserError, match=r"train\.grpo: trl\.GRPOConfig rejects .*at least 2 generations"):
        library_configs(config)


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


# --------------------------------------------------------------------------------------------------
# one validation pass: every bad field at once, with its valid range


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("eval.batch_size=0", r"eval\.batch_size: must be an integer >= 1 \(got 0\)"),
        ("eval.batch_size=-3", r"eval\.batch_size: must be an integer >= 1 \(got -3\)"),
        ("eval.max_new_tokens=0", r"eval\.max_new_tokens: must be an integer >= 1 \(got 0\)"),
        ("model.max_pixels=0", r"model\.max_pixels: must be an integer >= 1 \(got 0\)"),
        (
            "model.min_pixels=500000",
            r"model\.min_pixels: must be <= model\.max_pixels \(got 500000 > 200704\)",
        ),
        (
            "data.template_ratios={explanation: 0, short: 0}",
            r"data\.template_ratios: at least one ratio must be > 0",
        ),
        (
            "data.template_ratios={explanation: -1, short: 2}",
            r"data\.template_ratios: .*>= 0 \(got explanation=-1",
        ),
        ("data.template_ratios={}", r"data\.template_ratios: at least one ratio must be > 0"),
        ("data.train.0.limit=0", r"data\.train\.0\.limit: must be an integer >= 1 \(got 0\)"),
        ("data.eval.0.num_samples=0", r"data\.eval\.0\.num_samples: must be an integer >= 1"),
        ("reward.bertscore_batch_size=0", r"reward\.bertscore_batch_size: must be an integer >= 1"),
        (
            "train.grpo.learning_rate=.nan",
            r"train\.grpo\.learning_rate: must be a finite number > 0 \(got nan\)",
        ),
        (
            "judges=[{name: a, timeout_s: 0}]",
            r"judges\.0\.timeout_s: must be a finite number > 0 \(got 0\.0\)",
        ),
        (
            "judges=[{name: a, max_retries: -1}]",
            r"judges\.0\.max_retries: must be an integer >= 0 \(got -1\)",
        ),
        ("judges=[{name: a, concurrency: 0}]", r"judges\.0\.concurrency: must be an integer >= 1 \(got 0\)"),
        ("judges=[{name: a, backoff_s: .inf}]", r"judges\.0\.backoff_s: expected a finite number"),
    ],
)
def test_out_of_range_values_name_the_field_and_its_range(override: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_every_bad_field_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "eval:\n  batch_size: 0\n  max_new_tokens: -1\nmodel:\n  max_pixels: 0\n"
        "judges:\n  - {name: a, timeout_s: 0, max_retries: -1, concurrency: 0}\n",
    )
    with pytest.raises(UserError) as info:
        load_config(path, ["train.bta=1", "lora.enabled=maybe"])
    lines = str(info.value).splitlines()
    assert lines[0] == "8 invalid settings:"
    reported = {
        line.strip().split(":")[0].split(";")[0].replace("unknown config key ", "") for line in lines[1:]
    }
    assert reported == {
        "'train.bta'",
        "lora.enabled",
        "eval.batch_size",
        "eval.max_new_tokens",
        "model.max_pixels",
        "judges.0.timeout_s",
        "judges.0.max_retries",
        "judges.0.concurrency",
    }


def test_validate_on_a_built_config_uses_the_same_checks() -> None:
    config = RunConfig()
    config.eval.batch_size = 0
    config.judges = [JudgeConfig(name="a", concurrency=0)]
    with pytest.raises(UserError, match=r"eval\.batch_size.*\n.*judges\.0\.concurrency"):
        config.validate()


def test_a_section_without_validation_errors_is_skipped_and_one_with_it_is_called() -> None:
    @dataclass
    class Plain:
        x: int = 0

    @dataclass
    class Checked:
        y: int = 0

        def validation_errors(self, prefix: str) -> list[str]:
            return [f"{prefix}.y: bad"] if self.y < 0 else []

    @dataclass
    class Root:
        plain: Plain = field(default_factory=Plain)
        items: list[Checked] = field(default_factory=lambda: [Checked(), Checked(y=-1)])

    assert collect_validation_errors(Root(), "") == ["items.1.y: bad"]


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("train:\n  max_steps: 1\neval:\n  batch_size: 2\ntrain:\n  beta: 0.1\n", "train", 5),
        ("train:\n  beta: 0.1\n  max_steps: 2\n  beta: 0.2\n", "beta", 4),
        ("judges:\n  - name: a\n    model: m\n    name: b\n", "name", 4),
    ],
)
def test_a_key_written_twice_in_yaml_is_an_error(tmp_path: Path, text: str, key: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=rf"line {line}, .*duplicate key '{key}' \(first at line \d\)"):
        load_config(path)


def test_list_item_overrides_accept_every_field_of_the_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data:\n  train:\n    - {source: vqa_rad, path: /data/vqarad}\njudges:\n  - {name: a, model: m1}\n",
    )
    config = load_config(path, ["data.train.0.skip_bad=true", "judges.0.timeout_s=5"])
    assert config.data.train[0].skip_bad is True and config.data.train[0].source == "vqa_rad"
    assert config.judges[0].timeout_s == 5.0 and config.judges[0].model == "m1"
    # A key the item's dataclass lacks lists that dataclass's keys, not the keys written in the YAML.
    with pytest.raises(
        UserError, match=r"unknown config key 'judges\.0\.nope'; valid keys here: name, model, "
    ):
        load_config(path, ["judges.0.nope=1"])
    with pytest.raises(
        UserError, match=r"'data\.train\.0\.skipbad'; valid keys here: source, path, name, split"
    ):
        load_config(path, ["data.train.0.skipbad=true"])
    with pytest.raises(UserError, match=r"'judges\.3' is not an index into a list of 1"):
        load_config(path, ["judges.3.timeout_s=5"])


def test_override_can_start_a_section_that_is_null_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "data:\n  train:\n    - {source: synthetic, column_map: null}\n")
    config = load_config(path, ["data.train.0.column_map.q=question"])
    assert config.data.train[0].column_map == {"q": "question"}


def test_union_and_any_annotations_are_checked_member_by_member() -> None:
    """Settings mirrored from TRL use unions (``float | list[float]``) and ``Any``; each is type-checked."""
    from rarl.config import _from_dict

    @dataclass
    class Mirrored:
        weights: float | list[float] | None = None
        extra: Any = None

    errors: list[str] = []
    assert _from_dict(Mirrored, {"weights": [1, 2], "extra": {"a": 1}}, "s", errors).weights == [1.0, 2.0]
    assert _from_dict(Mirrored, {"weights": 3}, "s", errors).weights == 3.0 and errors == []
    _from_dict(Mirrored, {"weights": "heavy"}, "s", errors)
    assert errors == ["s.weights: expected a number or a list, got 'heavy'"]


def test_template_names_checked_by_the_config_are_the_prompt_templates() -> None:
    from rarl.config import TEMPLATE_NAMES
    from rarl.prompts import TRAINING_TEMPLATES

    assert set(TEMPLATE_NAMES) == set(TRAINING_TEMPLATES)
    with pytest.raises(
        UserError, match=r"data\.single_template: invalid value 'long'; valid options: explanation"
    ):
        load_config(None, ["data.single_template=long"])
