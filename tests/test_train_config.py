"""``train.grpo`` / ``train.sft`` are TRL's own configs: any TRL field passes, bad values fail once.

The oracle for "any TRL field" is the installed TRL itself: the GRPOConfig rarl builds must carry exactly
the values written under ``train.grpo`` (TRL names, TRL meaning).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from rarl.cli import main
from rarl.config import LoraSettings, RunConfig, TrainConfig, load_config
from rarl.errors import UserError
from rarl.libconfig import library_configs


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_any_trl_field_reaches_grpo_config_under_its_trl_name(tmp_path: Path) -> None:
    from trl import GRPOConfig

    written = {
        "loss_type": "dr_grpo",
        "mask_truncated_completions": True,
        "steps_per_generation": 2,
        "top_entropy_quantile": 0.5,
        "importance_sampling_level": "sequence",
        "warmup_steps": 0.1,  # a fraction of the total steps in transformers 5
        "max_steps": 3,
        "output_dir": str(tmp_path / "run"),
    }
    overrides = [f"train.grpo.{key}={value}" for key, value in written.items()]
    config = load_config(None, [*overrides, "reward.names=[format,accuracy]", "reward.weights=[1,2]"])
    args = library_configs(config).args
    assert isinstance(args, GRPOConfig)
    for key, value in written.items():
        assert getattr(args, key) == value, key
    assert args.reward_weights == [1.0, 2.0]  # from reward.weights, the one home of the weights
    assert args.learning_rate == 1e-5 and args.beta == 0.04  # rarl's defaults beneath the mapping
    assert args.use_cpu is (not torch.cuda.is_available())
    for name in ("epsilon", "top_p", "num_iterations", "scale_rewards", "delta", "temperature", "top_k"):
        assert name not in config.train.grpo  # neither written nor a rarl default: TRL's own default
        assert getattr(args, name) == GRPOConfig.__dataclass_fields__[name].default, name


def test_sft_mapping_builds_sft_config(tmp_path: Path) -> None:
    from trl import SFTConfig

    config = load_config(None, ["train.method=sft", "train.sft.packing=true", "train.sft.max_steps=2"])
    args = library_configs(config).args
    assert isinstance(args, SFTConfig)
    assert args.packing is True and args.max_steps == 2
    assert args.max_length is None and args.completion_only_loss is True  # rarl's documented defaults


FLAT = ["train:\n  learning_rate: 1.0e-5\n", "train:\n  method: sft\n  save_steps: 5\n"]


@pytest.mark.parametrize("text", FLAT)
def test_a_flat_train_key_is_an_unknown_key_exit_2(tmp_path: Path, text: str, capsys) -> None:
    """No release had the flat ``train:`` shape: a key there is unknown like any other, one line, exit 2."""
    key = text.strip().splitlines()[-1].split(":")[0].strip()
    expected = rf"unknown config key 'train\.{key}'; valid keys here: method, grpo, sft$"
    with pytest.raises(UserError, match=expected):
        load_config(write(tmp_path, text))
    with pytest.raises(UserError, match=expected):
        load_config(None, [f"train.{key}=1"])
    assert main(["train", "--config", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"train.{key}" in err[0]


def test_unknown_trl_key_names_closest_valid_names() -> None:
    with pytest.raises(UserError, match=r"train\.grpo\.learnig_rate: .*has no such field.*learning_rate"):
        load_config(None, ["train.grpo.learnig_rate=1e-5"])
    with pytest.raises(UserError, match=r"train\.sft\.max_seq_length: .*closest valid names: .*max_length"):
        load_config(None, ["train.method=sft", "train.sft.max_seq_length=128"])


def test_fields_rarl_sets_elsewhere_are_refused_with_their_home() -> None:
    with pytest.raises(UserError, match=r"train\.grpo\.reward_weights: .*reward\.weights"):
        load_config(None, ["train.grpo.reward_weights=[1,1,1,1]"])
    with pytest.raises(
        UserError, match=r"train\.grpo\.gradient_checkpointing: .*model\.gradient_checkpointing"
    ):
        load_config(None, ["train.grpo.gradient_checkpointing=true"])


BAD_VALUES = [
    ("per_device_train_batch_size", 0, "an integer >= 1"),
    ("gradient_accumulation_steps", 0, "an integer >= 1"),
    ("learning_rate", -1, "a finite number > 0"),
    ("learning_rate", float("nan"), "a finite number > 0"),
    ("max_completion_length", 0, "an integer >= 1"),
    ("temperature", 0, "a finite number > 0"),
    ("beta", -1, "a finite number >= 0"),
    ("max_steps", 0, "-1 (use num_train_epochs) or an integer >= 1"),
    ("loss_type", "grpoo", "valid options: grpo, dr_grpo, dapo"),
    ("learning_rate", "fast", "expected a number"),
]


@pytest.mark.parametrize(("key", "value", "valid"), BAD_VALUES, ids=[f"{k}={v}" for k, v, _ in BAD_VALUES])
def test_each_bad_train_value_is_named_with_its_valid_range(key: str, value: object, valid: str) -> None:
    train = TrainConfig()
    train.grpo[key] = value
    errors = train.validation_errors("train")
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"train.grpo.{key}: ") and valid in errors[0]
    # and the default is fine: the error is about this value, not about the section
    assert TrainConfig().validation_errors("train") == []


def test_every_bad_value_is_listed_at_once() -> None:
    overrides = ["train.grpo.per_device_train_batch_size=0", "train.grpo.temperature=0", "train.grpo.beta=-1"]
    with pytest.raises(UserError) as caught:
        load_config(None, overrides)
    header, *lines = str(caught.value).splitlines()
    assert header == "3 invalid settings:"
    assert sorted(line.strip().split(":")[0] for line in lines) == [
        "train.grpo.beta",
        "train.grpo.per_device_train_batch_size",
        "train.grpo.temperature",
    ]


def test_max_steps_zero_no_longer_trains(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, "model: {name_or_path: tiny}\ntrain:\n  grpo:\n    max_steps: 0\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "train.grpo.max_steps: must be -1" in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


def test_trl_own_rejections_are_reported_when_built_as_one_line() -> None:
    """TRL's __post_init__ checks (whole groups per generation round, G >= 2) are TRL's: asked, not copied;
    loading (every command) checks the mapping, building (commands that train) asks TRL."""
    config = RunConfig()
    config.train.grpo.update(per_device_train_batch_size=4, gradient_accumulation_steps=1, num_generations=3)
    assert config.train.validation_errors("train") == []  # the mapping itself is fine
    with pytest.raises(UserError) as caught:
        library_configs(config, device="cpu")
    assert str(caught.value).startswith("train.grpo: trl.GRPOConfig rejects these settings: ")
    assert "divisible by num_generations (3)" in str(caught.value)
    config.train.grpo["steps_per_generation"] = 3  # 4 x 3 = 12 completions: four whole groups of 3
    assert library_configs(config, device="cpu").args.generation_batch_size == 12
    config.train.grpo.update(num_generations=1, steps_per_generation=None)
    with pytest.raises(UserError, match="at least 2 generations") as caught:
        library_configs(config, device="cpu")
    assert "\n" not in str(caught.value)


def test_a_gpu_config_validates_on_any_machine_and_precision_follows_model_dtype() -> None:
    """bf16/fp16 are the machine's business: a GPU config loads on a laptop, and unless the mapping names
    them they follow model.dtype on the device the run uses."""
    config = load_config(None, ["train.grpo.bf16=true", "model.dtype=bfloat16"])
    assert config.train.grpo["bf16"] is True
    args = library_configs(load_config(None, ["model.dtype=bfloat16"]), device="cpu").args
    assert (args.use_cpu, args.bf16, args.fp16) == (True, False, False)
    from rarl.libconfig import precision_flags

    assert precision_flags("float16", "cuda") == {"bf16": False, "fp16": True}
    assert precision_flags("float32", "cuda") == {"bf16": False, "fp16": False}
    assert precision_flags("bfloat16", "cpu") == {"bf16": False, "fp16": False}


def test_the_trainer_gets_the_one_config_built_at_the_boundary(tiny_model_config, tmp_path, monkeypatch):
    """``rarl train``'s path: the mapping is checked at load, TRL builds its GRPOConfig exactly once, and
    that very object (and PEFT's LoraConfig) is what the trainer holds: nothing re-checks or rebuilds."""
    from trl import GRPOConfig

    import rarl.train.run as run
    from rarl.data.synthetic import generate_samples

    built_count = []
    original_post_init = GRPOConfig.__post_init__

    def counting_post_init(self):
        built_count.append(self)
        original_post_init(self)

    monkeypatch.setattr(GRPOConfig, "__post_init__", counting_post_init)
    seen = {}
    real_build_trainer = run.build_trainer

    class Stop(Exception):
        pass

    def build_then_stop(config, built, *args, **kwargs):
        seen["built"] = built
        seen["trainer"] = real_build_trainer(config, built, *args, **kwargs)
        raise Stop

    monkeypatch.setattr(run, "build_trainer", build_then_stop)
    overrides = [
        f"model.name_or_path={tiny_model_config.name_or_path}",
        f"train.grpo.output_dir={tmp_path / 'run'}",
        "train.grpo.num_generations=2",
        "train.grpo.report_to=[]",
        "lora.r=4",
    ]
    config = load_config(None, overrides)
    with pytest.raises(Stop):
        run.run_training(config, samples=generate_samples(4, seed=0, split="train"))
    assert len(built_count) == 1
    trainer, built = seen["trainer"], seen["built"]
    assert trainer.args is built.args is built_count[0]
    assert built.lora.r == 4 and trainer.model.peft_config["default"].r == 4


def test_unknown_key_in_the_mapping_that_does_not_train_is_still_reported() -> None:
    train = TrainConfig(method="sft")
    train.grpo["num_generation"] = 4
    (error,) = train.validation_errors("train")
    assert (
        error.startswith("train.grpo.num_generation: trl.GRPOConfig has no such field")
        and "num_generations" in error
    )


def test_trl_rejections_become_one_line_user_errors() -> None:
    config = load_config(None, ["train.grpo.generation_batch_size=8", "train.grpo.steps_per_generation=2"])
    with pytest.raises(
        UserError, match=r"^train\.grpo: trl\.GRPOConfig rejects these settings: .*both"
    ) as caught:
        library_configs(config, device="cpu")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("r", 0, r"lora\.r: must be an integer >= 1"),
        ("target_modules", ["nope"], r"lora\.target_modules:.*nope"),
    ],
)
def test_lora_values_peft_would_fail_on(field: str, value: object, expected: str) -> None:
    lora = LoraSettings(**{field: value})
    (error,) = lora.validation_errors("lora")
    assert re.search(expected, error), error
    with pytest.raises(UserError, match=expected):
        RunConfig(lora=lora).validate()
    assert LoraSettings().validation_errors("lora") == []


def test_vllm_preset_without_vllm_says_how_to_install(tmp_path: Path, capsys) -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: the preset would start loading the model")
    preset = Path(__file__).resolve().parent.parent / "configs" / "rarl_qwen2vl_2b_vllm.yaml"
    assert main(["train", "--config", str(preset), f"train.grpo.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "trl[vllm]"' in err[0] and "use_vllm" in err[0]
    assert not (tmp_path / "run").exists()


def test_building_a_config_does_not_change_what_loading_accepts() -> None:
    """HfArgumentParser rewrites the dataclass fields' types when it is built (``None | str | list[str]``
    becomes ``str``); the annotation checks must read TRL's own annotations, not those rewritten fields."""
    from transformers import HfArgumentParser

    from rarl import trl_schema

    for method in ("sft", "grpo"):
        HfArgumentParser(trl_schema.trl_config_class(method))  # what every build does
        trl_schema._annotations.cache_clear()  # as in a process whose first config load follows a build
        overrides = [f"train.method={method}", f"train.{method}.report_to=[tensorboard]"]
        overrides.append(f"train.{method}.logging_steps=3")  # not rarl's defaults: the mapping is checked
        assert load_config(None, overrides).train.settings["report_to"] == ["tensorboard"]


def test_each_hand_written_rule_covers_a_value_trl_itself_accepts() -> None:
    """rarl keeps a range or choice rule only where TRL does not check: each rule's bad value is one the
    installed GRPOConfig builds without complaint (when TRL starts checking one, drop rarl's rule)."""
    import warnings

    from rarl import trl_schema

    bad = {key: 0 for key in trl_schema._RANGES} | {key: "nope" for key in trl_schema._CHOICES}
    bad |= {"max_steps": 0, "beta": -1, "epsilon": -1, "epsilon_high": -1, "weight_decay": -1}
    bad |= {"top_p": 1.5, "vllm_gpu_memory_utilization": 2, "max_grad_norm": float("nan")}
    for key, value in bad.items():
        test, _valid, why = trl_schema._RANGES.get(key, (None, "", "choice"))
        assert why and (test is None or not test(value)), key  # the value is one rarl refuses
        method = "grpo" if key in trl_schema.field_names("grpo") else "sft"
        settings = {"output_dir": "unused", "use_cpu": True, "per_device_train_batch_size": 2}
        if method == "grpo":
            settings["num_generations"] = 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trl_schema.trl_config_class(method)(**(settings | {key: value}))  # TRL accepts it
