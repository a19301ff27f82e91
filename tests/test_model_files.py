"""The model folders rarl builds or is pointed at: an unfinished tiny-model cache, a truncated adapter, a
folder that is not a model, a hub id without a hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rarl.config import ModelConfig
from rarl.models import build_tiny_model, load_processor, resolve_model_path

REPO_ROOT = Path(__file__).resolve().parent.parent


def loads_as_a_model(path: str | Path) -> bool:
    """The independent check: transformers itself reads the config and the processor."""
    from transformers import AutoConfig, AutoProcessor

    AutoConfig.from_pretrained(path)
    AutoProcessor.from_pretrained(path)
    return True


# --------------------------------------------------------------------------------------------------
# the tiny-model cache (outputs/tiny_model/seedN)


def test_a_cache_left_with_an_empty_config_json_is_rebuilt(tmp_path):
    """What a killed first run used to leave: a 0-byte config.json and nothing else."""
    cached = tmp_path / "cache" / "seed0"
    cached.mkdir(parents=True)
    (cached / "config.json").write_bytes(b"")
    path = resolve_model_path(ModelConfig(name_or_path="tiny"), cache_dir=tmp_path / "cache")
    assert Path(path) == cached and loads_as_a_model(path)
    processor = load_processor(ModelConfig(name_or_path="tiny"), path)
    assert processor.tokenizer.padding_side == "left"


def test_an_interrupted_build_leaves_nothing_half_written(tmp_path, monkeypatch):
    from transformers import Qwen2VLProcessor

    def killed(*args, **kwargs):  # the model weights are on disk by now; the processor is not
        raise KeyboardInterrupt

    monkeypatch.setattr(Qwen2VLProcessor, "save_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        resolve_model_path(ModelConfig(name_or_path="tiny"), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no seed0/, no temporary folder
    monkeypatch.undo()
    path = resolve_model_path(ModelConfig(name_or_path="tiny"), cache_dir=tmp_path / "cache")
    assert loads_as_a_model(path)


def test_kill_9_during_the_build_then_the_next_run_works(tmp_path):
    """A real SIGKILL once the build has started writing files."""
    cache = tmp_path / "cache"
    code = (
        "from rarl.config import ModelConfig\n"
        "from rarl.models import resolve_model_path\n"
        f"resolve_model_path(ModelConfig(name_or_path='tiny'), cache_dir={str(cache)!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env)
    deadline = time.time() + 120
    while not any(cache.rglob("config.json")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (cache / "seed0").exists() or (cache / "seed0" / "rarl_tiny.json").is_file()
    path = resolve_model_path(ModelConfig(name_or_path="tiny"), cache_dir=cache)
    assert loads_as_a_model(path)


def test_two_processes_building_the_same_cache_both_get_a_whole_model(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "from rarl.config import ModelConfig\n"
        "from rarl.models import resolve_model_path\n"
        "from transformers import AutoProcessor\n"
        f"path = resolve_model_path(ModelConfig(name_or_path='tiny'), cache_dir={str(cache)!r})\n"
        "AutoProcessor.from_pretrained(path)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, env=env) for _ in range(2)]
    assert [process.wait(timeout=300) for process in processes] == [0, 0]
    assert [p.name for p in cache.iterdir()] == ["seed0"]  # no temporary folder left behind
    assert loads_as_a_model(cache / "seed0")


def test_rebuilding_over_an_existing_model_replaces_it(tmp_path):
    build_tiny_model(tmp_path / "m", seed=0)
    build_tiny_model(tmp_path / "m", seed=1)
    assert json.loads((tmp_path / "m" / "rarl_tiny.json").read_text())["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


# --------------------------------------------------------------------------------------------------
# adapters: model.adapter_path, rarl ask --adapter, rarl eval --checkpoints


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model_config):
    from peft import get_peft_model

    from rarl.config import LoraSettings
    from rarl.models import load_model, lora_config

    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model = get_peft_model(load_model(tiny_model_config, device="cpu"), lora_config(LoraSettings(r=2)))
    model.save_pretrained(folder)
    return folder


def cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


BROKEN_ADAPTERS = {
    "half weights": ("adapter_model.safetensors", lambda p: cut(p), "adapter_model.safetensors is truncated"),
    "header only": ("adapter_model.safetensors", lambda p: cut(p, 0.02), "adapter_model.safetensors is"),
    "empty weights": ("adapter_model.safetensors", lambda p: p.write_bytes(b""), "is truncated"),
    "half config": ("adapter_config.json", lambda p: cut(p), "adapter_config.json is not valid JSON"),
    "empty config": ("adapter_config.json", lambda p: p.write_text(""), "adapter_config.json is empty"),
    "no weights": ("adapter_model.safetensors", lambda p: p.unlink(), "no adapter weights here"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_ADAPTERS))
def test_ask_with_a_broken_adapter_is_one_line(tmp_path, adapter_dir, tiny_model_dir, capsys, case):
    import shutil

    from PIL import Image

    from rarl.cli import main

    name, damage, message = BROKEN_ADAPTERS[case]
    broken = tmp_path / "adapter"
    shutil.copytree(adapter_dir, broken)
    damage(broken / name)
    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    command = ["ask", "--model", str(tiny_model_dir), "--adapter", str(broken), "--image", str(png), "q?"]
    code = main([*command, "--dtype", "float32", "--device", "cpu", "--max-new-tokens", "2"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_whole_adapter_still_loads(adapter_dir, tiny_model_config):
    from dataclasses import replace

    from rarl.models import load_model

    model = load_model(replace(tiny_model_config, adapter_path=str(adapter_dir)), device="cpu")
    assert any("lora_A" in name for name, _ in model.named_parameters())


# --------------------------------------------------------------------------------------------------
# --model / model.name_or_path: a folder that is not a model, a hub id without a hub


def _cut_file(name: str, keep: float):
    return lambda folder: cut(folder / name, keep)


def _write(name: str, text: str):
    return lambda folder: (folder / name).write_text(text)


def _emptied(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")


NOT_MODELS = {
    "a folder of other files": (_emptied, "not a model folder (no config.json)"),
    "empty config.json": (_write("config.json", ""), "config.json is empty"),
    "cut config.json": (_cut_file("config.json", 0.5), "config.json is not valid JSON"),
    "config.json a list": (_write("config.json", "[]"), "config.json is not a JSON object"),
    "config.json without model_type": (_write("config.json", '{"a": 1}'), "config.json has no model_type"),
    "a text-only model": (
        _write("config.json", '{"model_type": "gpt2"}'),
        "its model_type 'gpt2' is not an image-text model",
    ),
    "cut tokenizer.json": (_cut_file("tokenizer.json", 0.5), "tokenizer.json is not valid JSON"),
    "cut processor_config.json": (_cut_file("processor_config.json", 0.3), "processor_config.json is"),
    "cut weights": (_cut_file("model.safetensors", 0.5), "model.safetensors is truncated"),
}


@pytest.mark.parametrize("case", sorted(NOT_MODELS))
def test_ask_on_a_folder_that_is_not_a_model_is_one_line(tmp_path, tiny_model_dir, capsys, case):
    import shutil

    from PIL import Image

    from rarl.cli import main

    damage, message = NOT_MODELS[case]
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    damage(folder)
    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    code = main(["ask", "--model", str(folder), "--image", str(png), "--device", "cpu", "q?"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot load model from '{folder}': {message}" in err


def test_an_adapter_folder_given_as_the_model_says_so(tmp_path, adapter_dir, capsys):
    from PIL import Image

    from rarl.cli import main

    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    assert main(["ask", "--model", str(adapter_dir), "--image", str(png), "q?"]) == 2
    err = capsys.readouterr().err
    assert (
        "it is a LoRA adapter, not a model; pass it as --adapter" in err
        and len(err.strip().splitlines()) == 1
    )


def test_train_and_eval_on_a_broken_model_folder_are_one_line(tmp_path, tiny_model_dir, capsys):
    import shutil

    import yaml

    from rarl.cli import main

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.json").write_bytes(b"")
    config = {
        "model": {"name_or_path": str(folder), "dtype": "float32", "max_pixels": 112 * 112},
        "data": {
            "train": [{"source": "synthetic", "num_samples": 4, "seed": 1}],
            "eval": [{"source": "synthetic", "split": "test", "num_samples": 2, "seed": 2}],
        },
        "train": {
            "method": "sft",
            "sft": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "report_to": []},
        },
        "eval": {"output_dir": str(tmp_path / "eval"), "bertscore": False},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    for command in (["train", "--config", str(path)], ["eval", "--config", str(path), "--no-judges"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err
        lines = [line for line in err.strip().splitlines() if "error:" in line]
        assert lines == [
            f"rarl {command[0]}: error: cannot load model from '{folder}': config.json is empty"
        ], err
        assert "Traceback" not in err


def test_an_uncached_hub_id_offline_fails_at_once(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from rarl.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    started = time.time()
    assert main(["ask", "--model", "some-org/no-such-model", "--image", str(png), "q?"]) == 2
    err = capsys.readouterr().err
    assert "not in the Hugging Face cache, and HF_HUB_OFFLINE is set" in err, err
    assert len(err.strip().splitlines()) == 1 and time.time() - started < 10


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _no_hub_env(tmp_path: Path) -> dict[str, str]:
    """A hub endpoint nothing listens on, offline mode off: what a machine without network sees."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}",
            "HF_HUB_CACHE": str(tmp_path / "hub"),
            "NO_PROXY": "127.0.0.1",
        }
    )
    return env


def test_an_uncached_hub_id_without_a_hub_fails_within_seconds(tmp_path):
    from PIL import Image

    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    command = [
        sys.executable,
        "-m",
        "rarl.cli",
        "ask",
        "--model",
        "some-org/no-such-model",
        "--image",
        str(png),
        "q?",
    ]
    started = time.time()
    done = _run_without_hub(command, tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "cannot be reached" in done.stderr and "Retrying" not in done.stderr, done.stderr
    assert time.time() - started < 60


def _run_without_hub(command: list[str], tmp_path, timeout: int) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with no hub reachable; a run still going after ``timeout`` seconds is a failure."""
    try:
        return subprocess.run(
            command, cwd=REPO_ROOT, env=_no_hub_env(tmp_path), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still retrying the hub after {timeout} s")


def test_a_cached_hub_model_loads_from_the_cache_without_a_hub(tmp_path, tiny_model_dir):
    """The hub cache's layout: models--org--name/snapshots/<revision>/ and refs/main naming it."""
    import shutil

    from PIL import Image

    revision = "0" * 40
    repo = tmp_path / "hub" / "models--some-org--tiny-vl"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    command = [sys.executable, "-m", "rarl.cli", "ask", "--model", "some-org/tiny-vl", "--image", str(png)]
    command += ["--dtype", "float32", "--max-new-tokens", "4", "--device", "cpu", "q?"]
    done = _run_without_hub(command, tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Answer:" in done.stdout and "Retrying" not in done.stderr


def test_folders_left_by_killed_builds_are_cleared_once_stale(tmp_path):
    from rarl.models.tiny import STALE_BUILD_S

    old = tmp_path / ".seed0.building-abc"
    fresh = tmp_path / ".seed0.building-def"  # maybe another process building right now: kept
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "config.json").write_text("")
    os.utime(old, (time.time() - STALE_BUILD_S - 60,) * 2)
    resolve_model_path(ModelConfig(name_or_path="tiny"), cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, "seed0"]


def test_a_model_folder_under_home_is_expanded(tmp_path, tiny_model_dir, monkeypatch):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny-vl")
    monkeypatch.setenv("HOME", str(tmp_path))
    path = resolve_model_path(ModelConfig(name_or_path="~/models/tiny-vl"))
    assert Path(path) == tmp_path / "models" / "tiny-vl" and loads_as_a_model(path)


def test_eval_with_a_truncated_adapter_path_is_one_line(tmp_path, adapter_dir, tiny_model_dir, capsys):
    import shutil

    import yaml

    from rarl.cli import main

    broken = tmp_path / "adapter"
    shutil.copytree(adapter_dir, broken)
    cut(broken / "adapter_model.safetensors")
    config = {
        "model": {"name_or_path": str(tiny_model_dir), "adapter_path": str(broken), "dtype": "float32"},
        "data": {"eval": [{"source": "synthetic", "split": "test", "num_samples": 2, "seed": 2}]},
        "eval": {"output_dir": str(tmp_path / "eval"), "bertscore": False, "max_new_tokens": 2},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(path), "--no-judges"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert len(lines) == 1 and "adapter_model.safetensors is truncated" in lines[0], err
    assert "Traceback" not in err


def test_a_sharded_checkpoint_with_a_missing_or_cut_shard_is_incomplete(tmp_path):
    import torch
    from safetensors.torch import save_file

    from rarl.schema.rundir import incomplete_reason

    checkpoint = tmp_path / "checkpoint-5"
    checkpoint.mkdir()
    (checkpoint / "trainer_state.json").write_text('{"global_step": 5}')
    (checkpoint / "config.json").write_text('{"model_type": "qwen2_vl"}')
    save_file({"a": torch.ones(64)}, str(checkpoint / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.ones(64)}, str(checkpoint / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    assert incomplete_reason(checkpoint) is None
    cut(checkpoint / "model-00002-of-00002.safetensors")
    assert "names model-00002-of-00002.safetensors, which is truncated" in incomplete_reason(checkpoint)
    (checkpoint / "model-00002-of-00002.safetensors").unlink()
    assert "names model-00002-of-00002.safetensors, which is missing" in incomplete_reason(checkpoint)


def test_torch_file_problem_agrees_with_torch_load(tmp_path):
    import torch

    from rarl.io import torch_file_problem

    whole = tmp_path / "optimizer.pt"
    torch.save({"state": {0: {"exp_avg": torch.ones(300)}}, "param_groups": [{"lr": 0.1}]}, whole)
    data = whole.read_bytes()
    for cut_at in sorted({0, 10, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1, len(data)}):
        path = tmp_path / f"cut{cut_at}.pt"
        path.write_bytes(data[:cut_at])
        try:
            torch.load(path, map_location="cpu", weights_only=True)
            loads = True
        except Exception:
            loads = False
        assert (torch_file_problem(path, load=True) is None) == loads, cut_at


def test_an_adapter_trained_on_another_base_model_is_one_line(tmp_path, adapter_dir, capsys):
    """Whole files, wrong shapes: the adapter was trained on a 64-wide model, this one is 32 wide."""
    from PIL import Image

    from rarl.cli import main

    other = build_tiny_model(tmp_path / "narrow", seed=0, width=32)
    png = tmp_path / "ok.png"
    Image.new("RGB", (32, 32)).save(png)
    command = ["ask", "--model", str(other), "--adapter", str(adapter_dir), "--image", str(png), "q?"]
    assert main([*command, "--dtype", "float32", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert f"cannot load adapter from '{adapter_dir}': its weights do not fit this base model" in line, err
    assert "Traceback" not in err
