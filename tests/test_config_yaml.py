"""What a user writes in YAML reaches rarl as they meant it: merge keys, YAML 1.2 scalars, bounded
expansion and messages, TRL fields checked by their own types, overrides given once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from rarl.config import load_config
from rarl.errors import UserError


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_merge_keys_bring_in_an_anchor_and_own_keys_override_it(tmp_path) -> None:
    path = write(tmp_path, """\
        x-eval: &eval_defaults
          batch_size: 2
          max_new_tokens: 16
        data:
          train:
            - &rad {source: vqa_rad, path: data/VQA_RAD, split: train, limit: 5}
          eval:
            - <<: *rad
              split: test
        eval:
          <<: *eval_defaults
          max_new_tokens: 32
        """)
    # yaml.safe_load is the oracle for what the file means
    meant = yaml.safe_load(path.read_text())
    config = load_config(path)
    assert config.eval.batch_size == meant["eval"]["batch_size"] == 2
    assert config.eval.max_new_tokens == meant["eval"]["max_new_tokens"] == 32
    (spec,) = config.data.eval
    assert (spec.source, spec.path, spec.split, spec.limit) == ("vqa_rad", "data/VQA_RAD", "test", 5)


def test_a_real_duplicate_key_is_still_refused_beside_a_merge(tmp_path) -> None:
    path = write(tmp_path, """\
        x-d: &d {batch_size: 2}
        eval:
          <<: *d
          max_new_tokens: 8
          max_new_tokens: 16
        """)
    with pytest.raises(UserError, match="duplicate key 'max_new_tokens'"):
        load_config(path)


def test_an_unknown_top_level_key_says_where_anchors_go(tmp_path) -> None:
    path = write(tmp_path, "defaults: &d {batch_size: 2}\neval: {<<: *d}\n")
    with pytest.raises(UserError, match=r"unknown config key 'defaults'.*x-"):
        load_config(path)


def test_yaml_1_2_scalars_and_the_fields_type_decide(tmp_path) -> None:
    from rarl.libconfig import library_configs

    path = write(tmp_path, """\
        lora: {enabled: off, r: 010}
        eval: {do_sample: yes}
        train:
          grpo:
            learning_rate: 1e-5
            save_strategy: no
            bf16: no
            output_dir: outputs/x
        """)
    config = load_config(path)
    grpo = config.train.grpo
    assert grpo["learning_rate"] == pytest.approx(1e-5) and isinstance(grpo["learning_rate"], float)
    assert grpo["save_strategy"] == "no" and grpo["bf16"] is False
    assert config.lora.enabled is False and config.lora.r == 10 and config.eval.do_sample is True
    # TRL itself accepts what arrives: its own dataclass is the judge of "save_strategy: no"
    built = library_configs(config, device="cpu").args
    assert str(built.save_strategy.value) == "no"


def test_a_quoted_number_for_a_number_field_is_that_number() -> None:
    config = load_config(None, ["train.grpo.learning_rate='3e-4'", "train.grpo.use_cpu='yes'"])
    assert config.train.grpo["learning_rate"] == pytest.approx(3e-4) and config.train.grpo["use_cpu"] is True


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("5", "train.grpo.report_to: expected a string or a list of strings, got 5"),
        ("wandbx", "train.grpo.report_to: wandbx is not supported"),
        ("[tensorboard, 7]", "train.grpo.report_to: expected a string or a list of strings"),
    ],
)
def test_report_to_is_checked_before_trl_sees_it(value: str, named: str) -> None:
    with pytest.raises(UserError) as caught:
        load_config(None, [f"train.grpo.report_to={value}"])
    assert named in str(caught.value)


def test_report_to_an_integration_that_is_not_installed_is_refused() -> None:
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    missing = sorted(set(INTEGRATION_TO_CALLBACK) - set(get_available_reporting_integrations()))
    if not missing:
        pytest.skip("every reporting integration is installed here")
    with pytest.raises(UserError, match=f"train.grpo.report_to: {missing[0]} not installed"):
        load_config(None, [f"train.grpo.report_to=[{missing[0]}]"])
    for fine in ("none", "[tensorboard]", "[]"):
        load_config(None, [f"train.grpo.report_to={fine}"])


def test_other_typed_trl_fields_are_checked_by_their_annotation() -> None:
    """Not only report_to: any field whose annotation is a mapping or a list is checked against it."""
    with pytest.raises(UserError, match=r"train\.grpo\.model_init_kwargs: expected"):
        load_config(None, ["train.grpo.model_init_kwargs=[1, 2]"])


def laughs(levels: int, name: str) -> str:
    lines = ['x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x-a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n{name}: *a{levels - 1}\n"


@pytest.mark.parametrize("target", ["eval:\n  batch_size", "model:\n  name_or_path", "judges"])
def test_nested_aliases_are_refused_quickly(tmp_path, target: str) -> None:
    """A 'billion laughs' file (9 levels of 9 aliases: 387 million strings) is refused in seconds."""
    section, _, key = target.partition(":\n  ")
    text = laughs(9, key or section)
    if key:
        text = text.replace(f"\n{key}: ", f"\n{section}:\n  {key}: ")
    path = tmp_path / "laughs.yaml"
    path.write_text(text, encoding="utf-8")
    code = f"from rarl.config import load_config\nload_config({str(path)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "expands to more than" in done.stderr


def test_an_error_about_a_large_value_stays_short() -> None:
    big = "[" + ", ".join(["x" * 50] * 5000) + "]"
    with pytest.raises(UserError) as caught:
        load_config(None, [f"eval.batch_size={big}"])
    assert len(str(caught.value)) < 300 and "eval.batch_size" in str(caught.value)


def test_the_same_override_twice_with_two_values_is_refused() -> None:
    with pytest.raises(UserError, match=r"override 'lora.r' given twice \('lora.r=4', then 'lora.r=8'\)"):
        load_config(None, ["lora.r=4", "lora.r=8"])
    assert load_config(None, ["lora.r=4", "lora.r=4"]).lora.r == 4  # the same setting twice is no conflict
