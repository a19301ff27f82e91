"""The training setups `rarl bench grpo` measures (:data:`CONFIGS`) and the default set per device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ARCHES = ("tiny", "qwen2-vl-2b")


@dataclass(frozen=True)
class BenchConfig:
    """One training setup to measure. ``weights``: dtype of the model weights (``auto`` = bf16 on GPU)."""

    name: str
    description: str
    lora: bool = True
    freeze_vision: bool = True
    weights: str = "auto"  # auto | float32 | bfloat16
    gradient_checkpointing: bool = False
    attn: str = "sdpa"
    grpo_overrides: tuple[tuple[str, Any], ...] = ()  # extra ``train.grpo`` settings (TRL names)
    quantize_4bit: bool = False
    trl_defaults: bool = False  # GRPOConfig's defaults for everything but the step's shape (not rarl's)


# The preset mirrors rarl's RunConfig defaults (configs/*.yaml): LoRA r=8 on the language model's q/k/v/o,
# frozen vision tower, bf16 weights on GPU, SDPA, beta=0.04. TRL defaults are GRPOConfig() as shipped: full
# fine-tuning of every weight (vision included) in fp32 with bf16 autocast, gradient checkpointing, beta=0.
CONFIGS: dict[str, BenchConfig] = {
    c.name: c
    for c in [
        BenchConfig(
            "trl_default",
            "GRPOConfig defaults: full FT incl. vision, fp32 weights + bf16 autocast (GPU), grad. ckpt, "
            "beta=0, lr 1e-6",
            lora=False,
            freeze_vision=False,
            weights="float32",
            gradient_checkpointing=True,
            trl_defaults=True,
        ),
        BenchConfig(
            "rarl_preset",
            "rarl preset: LoRA r8 q/k/v/o (LM only), frozen vision, bf16 weights (GPU), SDPA, beta 0.04",
        ),
        BenchConfig("rarl_gc", "rarl preset + gradient checkpointing", gradient_checkpointing=True),
        BenchConfig("full", "rarl preset but full fine-tuning of the language model (no LoRA)", lora=False),
        BenchConfig(
            "full_gc",
            "full fine-tuning of the LM + gradient checkpointing",
            lora=False,
            gradient_checkpointing=True,
        ),
        BenchConfig("eager", "rarl preset with eager attention instead of SDPA", attn="eager"),
        BenchConfig(
            "flash_attn", "rarl preset with flash_attention_2 (needs flash-attn)", attn="flash_attention_2"
        ),
        BenchConfig("fp32", "rarl preset with fp32 weights (vs bf16)", weights="float32"),
        BenchConfig(
            "static_cache",
            "rarl preset with a static KV cache for generation",
            grpo_overrides=(("cache_implementation", "static"),),
        ),
        BenchConfig(
            "qlora",
            "rarl preset on a 4-bit NF4 base (bitsandbytes QLoRA), gradient checkpointing",
            quantize_4bit=True,
            gradient_checkpointing=True,
        ),
    ]
}

DEFAULT_CONFIGS = {
    "cuda": [
        "trl_default",
        "rarl_preset",
        "rarl_gc",
        "full",
        "eager",
        "flash_attn",
        "fp32",
        "static_cache",
        "qlora",
    ],
    "cpu": ["trl_default", "rarl_preset", "rarl_gc", "full", "eager", "static_cache"],
}
