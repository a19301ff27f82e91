"""Where a number was measured: versions and hardware, why a setup cannot run here, and the device's peaks."""

from __future__ import annotations

import platform
import time
from typing import Any

from rarl.bench.grpo.configs import BenchConfig
from rarl.bench.grpo.settings import BenchSettings

# Dense bf16 tensor-core peak (FLOP/s) and memory bandwidth (bytes/s) from the vendors' data sheets. The first
# name fragment contained in torch.cuda.get_device_name() wins, so more specific names come first.
GPU_PEAKS: list[tuple[str, float, float]] = [
    ("H200", 989e12, 4.8e12),
    ("H100 PCIe", 756e12, 2.0e12),
    ("H100", 989e12, 3.35e12),
    ("A100-SXM4-80GB", 312e12, 2.039e12),
    ("A100 80GB PCIe", 312e12, 1.935e12),
    ("A100", 312e12, 1.555e12),
    ("L40S", 362e12, 0.864e12),
    ("L4", 121e12, 0.3e12),
    ("RTX 4090", 165e12, 1.008e12),
    ("RTX 3090", 71e12, 0.936e12),
]

# --------------------------------------------------------------------------------------------------
# environment and availability


def environment(device: str) -> dict[str, Any]:
    """Versions and hardware, so a number is never separated from where it was measured."""
    import peft
    import torch
    import transformers
    import trl

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["cuda"] = torch.version.cuda
    env["bitsandbytes"] = _version("bitsandbytes")
    env["flash_attn"] = _version("flash_attn")
    return env


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # an optional package that is absent or broken is simply unavailable
        return None


def unavailable_reason(config: BenchConfig, device: str) -> str | None:
    """Why a configuration cannot run here (None when it can)."""
    if config.quantize_4bit:
        if device != "cuda":
            return "4-bit QLoRA needs a CUDA GPU"
        if _version("bitsandbytes") is None:
            return "bitsandbytes is not installed"
    if config.attn == "flash_attention_2":
        if device != "cuda":
            return "flash-attention needs a CUDA GPU"
        if _version("flash_attn") is None:
            return "flash-attn is not installed"
    return None


def peaks(device: str, settings: BenchSettings) -> tuple[float | None, float | None, str]:
    """Peak FLOP/s and bytes/s for MFU and the rollout bandwidth bound, and where they came from."""
    flops, bandwidth = settings.peak_flops, settings.peak_bandwidth
    source = "command line" if flops or bandwidth else "none (CPU: pass --peak-tflops)"
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name(0)
        for fragment, table_flops, table_bw in GPU_PEAKS:
            if fragment.lower() in name.lower():
                source = f"data sheet for {fragment}" if not (flops and bandwidth) else source
                flops, bandwidth = flops or table_flops, bandwidth or table_bw
                break
        else:
            source = f"unknown GPU {name!r}: pass --peak-tflops/--peak-bandwidth-gbs"
    return flops, bandwidth, source
