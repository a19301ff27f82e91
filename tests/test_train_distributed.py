"""``accelerate launch -m rarl train`` with two processes (DDP over gloo on CPU): one run, not two.

Two processes of the real ``python -m rarl train`` each train the tiny model's LoRA adapter for two GRPO
steps. DDP must leave both with the same weights, and the run directory must look like a single run: one
``resolved_config.yaml``, one TensorBoard file, one metrics line per step, one summary line on stdout.

On a machine without CUDA, ``accelerate launch --cpu --num_processes 2`` starts a single process
(accelerate 1.15 needs MPI for multi-CPU); ``--multi_gpu`` starts two through torchrun, and with no GPU each
process trains on the CPU with the gloo backend. That is what this test runs, through the shipped
``configs/accelerate/ddp.yaml`` (``distributed_type: MULTI_GPU``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCELERATE = REPO_ROOT / "configs" / "accelerate"

# Runs ``python -m rarl`` unchanged, observing (not altering) the trainer: after the real ``train`` returns,
# each process saves its own trainable weights so the test can compare the two ranks.
DRIVER = """
import os, runpy, sys, torch
from trl import GRPOTrainer

real_train = GRPOTrainer.train

def train_and_save_weights(self, *args, **kwargs):
    result = real_train(self, *args, **kwargs)
    weights = {n: p.detach().cpu().clone() for n, p in self.model.named_parameters() if p.requires_grad}
    rank = self.accelerator.process_index
    torch.save(weights, os.path.join(os.environ["RARL_TEST_WEIGHTS"], f"rank{rank}.pt"))
    return result

GRPOTrainer.train = train_and_save_weights
sys.argv = ["rarl", *sys.argv[1:]]
runpy.run_module("rarl", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CPU-only test; on GPUs use configs/accelerate/ddp.yaml"
)
def test_two_process_grpo_trains_one_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = {
        "model": {"name_or_path": str(tiny_model_dir), "dtype": "float32", "max_pixels": 112 * 112},
        "data": {"train": [{"source": "synthetic", "num_samples": 16, "seed": 5}]},
        # open questions scored by BERTScore: random completions get different rewards, so the adapter moves
        "reward": {"names": ["accuracy"], "weights": [1.0]},
        "train": {
            "method": "grpo",
            "grpo": {
                "output_dir": str(out),
                "max_steps": 2,
                "save_steps": 2,
                "learning_rate": 0.01,
                "per_device_train_batch_size": 2,  # x 2 processes = 2 prompts x 2 generations per step
                "num_generations": 2,
                "max_completion_length": 8,
                "report_to": ["tensorboard"],
            },
        },
    }
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()

    # the shipped DDP config; on CPU: fp32 and a free port (other test runs may be using 29500)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE / "ddp.yaml"),
    ]
    launch += ["--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), RARL_TEST_WEIGHTS=str(weights_dir), OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run(
        [*launch, str(driver), "train", "--config", str(config_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # two processes really trained (one RNG state per rank in the checkpoint) ...
    checkpoint = out / "checkpoint-2"
    assert sorted(p.name for p in checkpoint.glob("rng_state*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    # ... and ended with identical trainable weights, which moved from LoRA's zero-initialised B
    rank0 = torch.load(weights_dir / "rank0.pt")
    rank1 = torch.load(weights_dir / "rank1.pt")
    assert rank0.keys() == rank1.keys() and any("lora_B" in name for name in rank0)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert any(rank0[name].abs().sum() > 0 for name in rank0 if "lora_B" in name)

    # one copy of every output: rarl's own files, TensorBoard, the final adapter
    assert (out / "resolved_config.yaml").is_file() and (out / "adapter_model.safetensors").is_file()
    assert len(list((out / "runs").rglob("events.out.tfevents.*"))) == 1
    # one whole JSON object per line, one line per step (nothing interleaved or duplicated)
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records if "reward" in r] == [1, 2]
    assert sum("train_runtime" in r for r in records) == 1
    # one summary line on stdout, one "trainable parameters" log line
    assert done.stdout.count("grpo: 2 steps") == 1, done.stdout
    assert done.stderr.count("GRPO: trainable") == 1


@pytest.mark.parametrize(
    ("name", "kind", "zero_stage"),
    [("ddp", "MULTI_GPU", None), ("deepspeed_zero2", "DEEPSPEED", 2), ("deepspeed_zero3", "DEEPSPEED", 3)],
)
def test_shipped_accelerate_configs_are_what_accelerate_reads(name: str, kind: str, zero_stage: int | None):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ACCELERATE / f"{name}.yaml"
    config = load_config_from_file(str(path))  # accelerate's own loader: unknown keys fail here
    assert config.distributed_type.name == kind
    assert config.deepspeed_config.get("zero_stage") == zero_stage
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(
        f"# accelerate launch --config_file configs/accelerate/{name}.yaml -m rarl train "
    )


def test_python_dash_m_rarl_is_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rarl", "train", "--help"],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--resume" in done.stdout
