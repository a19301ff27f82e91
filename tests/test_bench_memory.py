"""`rarl bench memory`: the GRPO step's peak memory predicted on fake tensors, checked against real runs.

The oracle is the CPU allocator's own record of a real run: torch.profiler's ``[memory]`` events (one per
allocation and free, with its size and time) of real GRPO steps of the tiny Qwen2-VL, split into phases by
``record_function`` ranges placed by the same phase wrappers. The prediction never sees those records: it
builds its own model (from the configuration, no weights) and trainer under FakeTensorMode.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile, record_function

from rarl import cli
from rarl.config import RunConfig
from rarl.data.synthetic import generate_samples
from rarl.libconfig import library_configs
from rarl.train.grpo import build_grpo_trainer
from rarl.train.memory import (
    STEPS,
    StepShape,
    instrument_phases,
    memory_preflight,
    memory_warning,
    predict_grpo_memory,
    prediction_config,
)
from rarl.train.memory.kernels import cuda_attention_kernels
from rarl.train.memory.tracker import LiveBytes, simulation

SHAPE = StepShape(num_generations=2, max_completion_length=8, image_size=56)
MARK = "rarl.memory."


def tiny_run(tiny_model_dir: Path, **model: Any) -> RunConfig:
    run = RunConfig()
    run.model.name_or_path = str(tiny_model_dir)
    for key, value in model.items():
        setattr(run.model, key, value)
    run.reward.names = ["format", "length"]
    run.reward.weights = [1.0, 1.0]
    run.train.grpo.update(per_device_train_batch_size=2, num_generations=2, max_completion_length=8)
    return run


def profiled_real_steps(run: RunConfig, tmp_path: Path) -> tuple[dict[str, int], int, int]:
    """A real CPU run of the prediction's own two steps: per-phase peak of the profiler's running sum of
    allocations (bytes above what was live when ``train()`` began), the resident bytes at the second step's
    start on the same scale, and the model's parameter and buffer bytes."""
    run = prediction_config(run.validate(), SHAPE, tmp_path / "real")
    built = library_configs(run, device="cpu")
    torch.manual_seed(0)
    trainer = build_grpo_trainer(run, built, generate_samples(8, seed=0, image_size=SHAPE.image_size))
    tensors = [*trainer.model.parameters(), *trainer.model.buffers()]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}

    @contextlib.contextmanager
    def phase(name: str) -> Any:
        with record_function(MARK + name):
            yield

    def on_step_begin(step: int) -> None:
        with record_function(f"{MARK}step_begin.{step}"):
            pass

    instrument_phases(trainer, phase, on_step_begin)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer.train()
    events = list(prof.profiler.kineto_results.events())
    memory = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
    ranges = [
        (e.start_ns(), e.start_ns() + e.duration_ns(), e.name().removeprefix(MARK))
        for e in events
        if e.name().startswith(MARK)
    ]
    start = next(a for a, _, name in ranges if name == f"step_begin.{STEPS - 1}")
    phases = [r for r in ranges if not r[2].startswith("step_begin") and r[1] >= start]

    def innermost(time: int) -> str:
        around = [r for r in phases if r[0] <= time <= r[1]]
        return max(around, key=lambda r: r[0])[2] if around else "other"

    live, resident, peaks = 0, None, {}
    entries = sorted((a, name) for a, _, name in phases)
    for event in memory:
        while entries and entries[0][0] <= event.start_ns():  # a phase entered: its live bytes at entry
            _, name = entries.pop(0)
            peaks[name] = max(peaks.get(name, 0), live)
        if resident is None and event.start_ns() >= start:
            resident = live
        live += event.nbytes()
        if event.start_ns() >= start:
            name = innermost(event.start_ns())
            peaks[name] = max(peaks.get(name, 0), live)
    assert resident is not None
    return peaks, resident, sum(storages.values())


@pytest.mark.parametrize(
    "model, grpo",
    [
        ({}, {}),  # the preset: LoRA, frozen vision, beta 0.04 (reference pass by disabling the adapter)
        ({"gradient_checkpointing": True}, {"beta": 0.0}),
    ],
    ids=["lora", "lora-checkpointing"],
)
def test_prediction_matches_the_allocators_records_of_a_real_cpu_step(
    tiny_model_dir: Path, tmp_path: Path, model: dict[str, Any], grpo: dict[str, Any]
) -> None:
    run = tiny_run(tiny_model_dir, **model)
    run.train.grpo.update(grpo)
    predicted = predict_grpo_memory(run.validate(), SHAPE, attention_kernels="cpu", target_device="cpu")
    real, real_resident, weight_bytes = profiled_real_steps(run, tmp_path)

    base = predicted.live_before_train  # the prediction's own model and trainer state, before train()
    assert base == pytest.approx(weight_bytes, rel=0.01)  # what a real load holds: weights and buffers
    assert predicted.resident_bytes - base == pytest.approx(real_resident, rel=0.01, abs=4096)
    for phase in ("generation", "reference", "forward_backward", "optimizer"):
        assert phase in real, (phase, real)
        assert predicted.phase_peaks[phase] - base == pytest.approx(real[phase], rel=0.01), phase
    assert max(predicted.phase_peaks.values()) - base == pytest.approx(max(real.values()), rel=0.01)
    assert predicted.total_bytes == max(predicted.phase_peaks.values())  # no reward model in this run


def _fake_forward_backward(tiny_model_dir: Path, length: int, attn: str, kernels: str) -> LiveBytes:
    """Peak and largest storage of one forward+backward of the tiny language model at ``length`` tokens,
    bf16, on fake tensors."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(tiny_model_dir)
    counter = LiveBytes()
    attention = cuda_attention_kernels() if kernels == "cuda" else contextlib.nullcontext()
    with simulation(counter, torch.tensor([10])), attention:
        model = AutoModelForImageTextToText.from_config(
            config, dtype=torch.bfloat16, attn_implementation=attn
        )
        ids = torch.full((2, length), 10, dtype=torch.long)
        counter.reset_peaks()
        model(input_ids=ids).logits.float().sum().backward()
    return counter


def test_cuda_kernels_keep_no_attention_matrix_and_grow_linearly(tiny_model_dir: Path) -> None:
    heads = 4  # the tiny model's query heads
    lengths = (512, 1024, 2048)
    for attn, kernels, quadratic in [("sdpa", "cuda", False), ("eager", "cuda", True)]:
        counters = [_fake_forward_backward(tiny_model_dir, n, attn, kernels) for n in lengths]
        peaks = [max(c.peaks.values()) for c in counters]
        matrix = 2 * heads * lengths[-1] ** 2 * 2  # B x H x L x L in bf16 at the longest length
        growth = (peaks[2] - peaks[1]) / (peaks[1] - peaks[0])  # 2 when linear in L, up to 4 when quadratic
        if quadratic:  # the oracle can fail: eager attention keeps the L x L matrix
            assert counters[-1].largest >= matrix and growth > 3, (attn, growth)
        else:
            assert counters[-1].largest < matrix / 4, (counters[-1].largest, matrix)  # logits are larger
            assert growth == pytest.approx(2.0, rel=0.1), peaks


def test_the_warning_is_decided_against_the_gpus_total(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RARL_MEMORY_CHECK", "1")
    run = tiny_run(tiny_model_dir).validate()
    calls: list[int] = []

    def predict(config: RunConfig) -> int:
        total = predict_grpo_memory(config, SHAPE, attention_kernels="cpu", target_device="cpu").total_bytes
        calls.append(total)
        return total

    small = memory_preflight(run, gpu=("Test GPU", 1 << 20), predict=predict)
    large = memory_preflight(run, gpu=("Test GPU", 1 << 40), predict=predict)
    assert calls[0] > 1 << 20  # the tiny step needs more than 1 MiB
    assert small is not None and "Test GPU" in small and f"{calls[0] / 2**30:.1f} GiB" in small
    assert large is None
    gib = 2**30
    assert memory_warning(20 * gib, 10 * gib, "x") is not None  # above the total: an OOM is expected
    assert "within 1 GiB + 10 %" in (memory_warning(9 * gib, 10 * gib, "x") or "")  # inside the margin
    assert memory_warning(8 * gib, 10 * gib, "x") is None  # 8 + 1 + 0.8 <= 10: fits with the headroom


def test_the_preflight_does_nothing_without_a_gpu(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("RARL_MEMORY_CHECK", "1")

    def never(config: RunConfig) -> int:
        raise AssertionError("no prediction runs on a machine without CUDA")

    with caplog.at_level(logging.INFO):
        assert memory_preflight(tiny_run(tiny_model_dir).validate(), predict=never) is None
    assert "memory pre-flight" not in caplog.text


def test_without_a_stored_prediction_the_preflight_names_the_command_and_simulates_nothing(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("RARL_MEMORY_CHECK", raising=False)

    def never(config: RunConfig) -> int:
        raise AssertionError("no simulation runs without RARL_MEMORY_CHECK=1")

    with caplog.at_level(logging.INFO):
        assert memory_preflight(tiny_run(tiny_model_dir).validate(), ("GPU", 1), predict=never) is None
    assert "was never predicted" in caplog.text and "rarl bench memory --config" in caplog.text


def test_the_command_writes_per_phase_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"model: {{name_or_path: {tiny_model_dir}}}\n"
        "reward: {names: [format, length], weights: [1.0, 1.0]}\n"
        "train: {method: grpo, grpo: {per_device_train_batch_size: 2}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "memory.json"
    argv = ["bench", "memory", "--config", str(config), "--bench-configs", "qlora", "--num-generations", "2"]
    argv += ["--max-completion-length", "4", "--image-size", "56", "--device", "cpu", "--out", str(out)]
    assert cli.main(argv) == 0
    report = json.loads(out.read_text())
    tiny, qlora = report["results"]
    assert tiny["status"] == "ok" and qlora["status"] == "not modelled"
    phases = tiny["phases_gib"]
    assert tiny["total_gib"] == pytest.approx(max(phases.values()) + tiny["reward_models_gib"])
    assert all(phases[p] >= tiny["resident_gib"] * 0.99 for p in ("generation", "forward_backward"))
    assert "--max-completion-length 4" in report["command"]
    assert "| tiny |" in out.with_suffix(".md").read_text()


def test_a_prediction_the_bench_made_answers_the_preflight_of_that_step_only(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rarl bench memory` on a laptop, then `rarl train` of the same config on a GPU: the stored row
    answers at once, without simulating and without opting in; a config with another step shape finds
    nothing."""
    from rarl.config import load_config

    monkeypatch.setenv("RARL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RARL_MEMORY_CHECK", raising=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"model: {{name_or_path: {tiny_model_dir}, max_pixels: 3136}}\n"
        "reward: {names: [format, length], weights: [1.0, 1.0]}\n"
        "train: {method: grpo, grpo: {per_device_train_batch_size: 2, num_generations: 2, "
        "max_completion_length: 4, output_dir: somewhere}}\n",
        encoding="utf-8",
    )
    out = tmp_path / "memory.json"
    argv = ["bench", "memory", "--config", str(config), "--num-generations", "2"]
    argv += ["--max-completion-length", "4", "--image-size", "56", "--out", str(out)]  # cuda, as on a GPU
    assert cli.main(argv) == 0
    row = json.loads(out.read_text())["results"][0]
    predicted = int(row["total_gib"] * 2**30)
    assert list((tmp_path / "cache" / "memory").glob("*.json")) == [
        tmp_path / "cache" / "memory" / f"{row['step_digest']}.json"
    ]

    def never(config: RunConfig) -> int:
        raise AssertionError("a stored prediction needs no simulation")

    # the training run: its own output folder and length, the same step
    run = load_config(config, ["train.grpo.output_dir=elsewhere", "train.grpo.max_steps=7"])
    small = memory_preflight(run, gpu=("Small GPU", predicted - 1), predict=never)
    assert small is not None and "Small GPU" in small
    assert f"[stored prediction, {tmp_path / 'cache' / 'memory'}" in small
    assert memory_preflight(run, gpu=("Roomy GPU", 2 * predicted + 2**31), predict=never) is None
    # another step shape was never predicted: nothing to say, and no simulation without opting in
    longer = load_config(config, ["train.grpo.max_completion_length=5"])
    assert memory_preflight(longer, gpu=("Small GPU", predicted - 1), predict=never) is None


def test_the_committed_tables_answer_the_preflight_of_the_presets_they_predicted() -> None:
    """The committed rows carry the digest of the step they simulated; recomputed from today's config
    code, the presets' steps at the table's shape must still find them (a config field added or renamed
    changes the digest, and the pre-flight would silently stop finding the committed answers)."""
    from rarl.config import load_config
    from rarl.train.memory.store import committed_tables, find_prediction, step_digest

    repo = Path(__file__).resolve().parents[1]
    tables = committed_tables()
    assert {t.name for t in tables} >= {"memory_predicted.json", "memory_predicted_bench_grpo.json"}
    for table in tables:
        report = json.loads(table.read_text(encoding="utf-8"))
        fields = ("num_generations", "max_completion_length", "image_size")
        shape = StepShape(**{k: report["shape"][k] for k in fields})
        for row in report["results"]:
            if row["status"] != "ok" or not row["source"].endswith(".yaml"):
                continue
            run = load_config(repo / row["source"])
            found = find_prediction(step_digest(run, shape), tables)
            assert found is not None and found[0]["total_gib"] == row["total_gib"], row["name"]
