"""`rarl bench grpo`: the cost of one GRPO step, split into its parts, for several training setups.

Why: the goal is RARL on Qwen2-VL-2B on a consumer GPU (< 16 GB) with rollouts near the memory-bandwidth
limit. Speed and memory depend on the architecture, not the weights, so the model is built from the real
Qwen2-VL-2B-Instruct configuration with random weights (``--arch qwen2-vl-2b``) or is the tiny offline
Qwen2-VL (``--arch tiny``, for CPU and tests). Random weights would emit EOS at random, so every completion
is forced to exactly ``--max-completion-length`` tokens (``min_new_tokens`` = ``max_new_tokens``) and the
generated lengths are checked.

Each configuration (TRL defaults, our preset, gradient checkpointing on/off, LoRA vs full, SDPA vs eager,
static KV cache, fp32 vs bf16, 4-bit QLoRA, flash-attention) trains ``--warmup-steps + --steps`` real
``trl.GRPOTrainer`` steps on synthetic medical-style samples with the real rewards. The trainer's own methods
are timed in place (nothing is re-implemented):

- generation: ``GRPOTrainer._generate`` (prompt tokenisation, vision encoder, prefill + decode)
- reward: ``GRPOTrainer._calculate_rewards`` (the four rewards; BERTScore on open answers/reasoning)
- logprob: the rest of ``_generate_and_score_completions`` (reference-model log-probs when beta > 0,
  padding, advantages)
- forward_backward: ``training_step`` minus the generation batch preparation (policy forward + backward)
- optimizer: ``optimizer.step`` (between the ``on_pre_optimizer_step`` and ``on_optimizer_step`` callbacks)
- other: the rest of the optimizer step (gradient clipping, ``zero_grad``, scheduler, callbacks)

Outputs: ``--out`` (default ``outputs/bench/grpo.json``) and a markdown table beside it (``.md``), rewritten
after every configuration so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import logging
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rarl.errors import UserError
from rarl.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

HELP = "GRPO step cost: seconds split into generation/reward/forward-backward, tokens/s, peak memory, MFU"

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

PHASES = ("generation", "reward", "logprob", "forward_backward", "optimizer", "other")


# --------------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=ARCHES, default="tiny", help="model architecture (random weights)")
    parser.add_argument(
        "--device", choices=("cuda", "cpu"), default=None, help="default: cuda when available"
    )
    parser.add_argument(
        "--configs",
        default=None,
        help=f"comma-separated configurations ({', '.join(CONFIGS)}); default: a set per device",
    )
    parser.add_argument(
        "--num-generations", type=int, default=8, help="G: completions per prompt (default 8)"
    )
    parser.add_argument(
        "--max-completion-length", type=int, default=512, help="L: every completion is exactly L tokens"
    )
    parser.add_argument(
        "--image-size", type=int, default=448, help="square image side in pixels (default 448)"
    )
    parser.add_argument(
        "--steps", type=int, default=3, help="measured GRPO steps per configuration (default 3)"
    )
    parser.add_argument("--warmup-steps", type=int, default=1, help="unmeasured steps first (default 1)")
    parser.add_argument(
        "--rewards",
        default="format,length,accuracy,reasoning",
        help="reward functions (default: all four, BERTScore included, as in training)",
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="peak FLOP/s for MFU (default: GPU table)"
    )
    parser.add_argument(
        "--peak-bandwidth-gbs", type=float, default=None, help="peak memory GB/s for the rollout bound"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is steadier on a busy shared CPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default="outputs/bench/grpo.json", help="JSON result path (.md written beside)"
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    settings = _settings_from_args(args)
    names = _config_names(args.configs, settings["device"])
    out = Path(args.out)
    report: dict[str, Any] = {
        "command": command_line(settings, names, out),
        "environment": environment(settings["device"]),
        "settings": settings,
        "formulas": FORMULAS,
        "results": [],
    }
    preload_rewards(settings)
    for index, name in enumerate(names, 1):
        console.print(f"[bold]\\[{index}/{len(names)}][/bold] {name}: {CONFIGS[name].description}")
        row = run_config(CONFIGS[name], settings)
        report["results"].append(row)
        console.print(markdown_line(row))
        write_report(report, out)
    console.print(f"wrote {out} and {out.with_suffix('.md')}")
    print(out.with_suffix(".md").read_text(encoding="utf-8"))
    return 0 if all(r["status"] in ("ok", "unavailable") for r in report["results"]) else 1


def command_line(settings: dict[str, Any], names: list[str], out: Path) -> str:
    """The full command that reproduces a report (every setting spelled out, defaults included)."""
    parts = [
        f"rarl bench grpo --arch {settings['arch']} --device {settings['device']}",
        f"--configs {','.join(names)}",
        f"--num-generations {settings['num_generations']}",
        f"--max-completion-length {settings['max_completion_length']}",
        f"--image-size {settings['image_size']} --steps {settings['steps']}",
        f"--warmup-steps {settings['warmup_steps']} --rewards {','.join(settings['rewards'])}",
        f"--seed {settings['seed']} --out {out}",
    ]
    if settings.get("threads"):
        parts.append(f"--threads {settings['threads']}")
    if settings["peak_flops"]:
        parts.append(f"--peak-tflops {settings['peak_flops'] / 1e12:g}")
    if settings["peak_bandwidth"]:
        parts.append(f"--peak-bandwidth-gbs {settings['peak_bandwidth'] / 1e9:g}")
    return " ".join(parts)


def _settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from rarl.models import default_device

    device = args.device or default_device()
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to torch here; use --device cpu")
    for flag, value, low in [
        ("--num-generations", args.num_generations, 2),
        ("--max-completion-length", args.max_completion_length, 1),
        ("--image-size", args.image_size, 28),
        ("--steps", args.steps, 1),
        ("--warmup-steps", args.warmup_steps, 0),
    ]:
        if value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    rewards = [r.strip() for r in args.rewards.split(",") if r.strip()]
    from rarl.rewards import REWARD_FUNCTIONS

    unknown = [r for r in rewards if r not in REWARD_FUNCTIONS]
    if unknown or not rewards:
        raise UserError(
            f"--rewards: unknown reward(s) {unknown}; valid options: {', '.join(REWARD_FUNCTIONS)}"
        )
    return {
        "arch": args.arch,
        "device": device,
        "num_generations": args.num_generations,
        "max_completion_length": args.max_completion_length,
        "image_size": args.image_size,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "rewards": rewards,
        "peak_flops": args.peak_tflops * 1e12 if args.peak_tflops else None,
        "peak_bandwidth": args.peak_bandwidth_gbs * 1e9 if args.peak_bandwidth_gbs else None,
        "seed": args.seed,
        "threads": args.threads,
    }


def _config_names(text: str | None, device: str) -> list[str]:
    if not text:
        return list(DEFAULT_CONFIGS[device])
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        raise UserError(f"--configs: unknown configuration(s) {unknown}; valid options: {', '.join(CONFIGS)}")
    return names


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


def peaks(device: str, settings: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """Peak FLOP/s and bytes/s for MFU and the rollout bandwidth bound, and where they came from."""
    flops, bandwidth = settings.get("peak_flops"), settings.get("peak_bandwidth")
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


# --------------------------------------------------------------------------------------------------
# model, data and trainer


def tiny_model_dir() -> str:
    """The cached tiny Qwen2-VL (built offline once); its processor is used for both architectures."""
    from rarl.config import ModelConfig
    from rarl.models import resolve_model_path

    return resolve_model_path(ModelConfig(name_or_path="tiny"))


def _weight_dtype(config: BenchConfig, device: str) -> Any:
    """The same ``auto`` rule as training and evaluation (bf16 on a GPU that supports it, else fp32)."""
    from rarl.models import resolve_dtype

    return resolve_dtype(config.weights, device)


def arch_for_tokenizer(tokenizer: Any, attn: str) -> dict[str, Any]:
    """The real 2B architecture with the special-token ids of our (offline) tokenizer.

    The vocabulary size stays 151,936, so embedding and LM-head cost are the real ones; only the ids of the
    image/vision/eos tokens move to where the offline tokenizer puts them, so the processor's image tokens and
    the model's ``image_token_id`` agree.
    """
    from rarl.models import QWEN2_VL_2B_ARCH

    arch = copy.deepcopy(QWEN2_VL_2B_ARCH)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>")}
    arch["image_token_id"] = ids["<|image_pad|>"]
    arch["video_token_id"] = ids["<|video_pad|>"]
    arch["vision_start_token_id"] = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    arch["vision_end_token_id"] = tokenizer.convert_tokens_to_ids("<|vision_end|>")
    arch["text_config"]["eos_token_id"] = tokenizer.eos_token_id
    arch["text_config"]["bos_token_id"] = tokenizer.pad_token_id
    arch["text_config"]["pad_token_id"] = tokenizer.pad_token_id
    arch["attn_implementation"] = attn
    return arch


def build_model(config: BenchConfig, settings: dict[str, Any], processor: Any, workdir: Path) -> Any:
    """A fresh model for one configuration (random weights; 4-bit via a saved copy when quantising)."""
    import torch

    from rarl.models import build_model_from_arch, freeze_vision_tower

    device = settings["device"]
    dtype = _weight_dtype(config, device)
    if settings["arch"] == "tiny":
        from transformers import AutoModelForImageTextToText

        source: str = tiny_model_dir()
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=dtype, attn_implementation=config.attn
        )
    else:
        arch = arch_for_tokenizer(processor.tokenizer, config.attn)
        model = build_model_from_arch(arch, dtype, device, seed=settings["seed"])
    # TRL builds the reference model (full fine-tuning with beta > 0) from the policy's path, and bitsandbytes
    # quantises while loading: both need the random weights saved as a checkpoint first.
    saved = workdir / "random_weights"
    if settings["arch"] != "tiny" and not config.lora and effective_beta(config) > 0:
        model.save_pretrained(saved)
        model.config._name_or_path = str(saved)
    if config.quantize_4bit:
        from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

        model.save_pretrained(saved)
        del model
        gc.collect()
        torch.cuda.empty_cache()
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
            llm_int8_skip_modules=["visual", "lm_head"],
        )
        model = AutoModelForImageTextToText.from_pretrained(
            saved, dtype=torch.bfloat16, quantization_config=quantization, attn_implementation=config.attn,
            device_map={"": 0},
        )  # fmt: skip
    if config.freeze_vision:
        freeze_vision_tower(model)
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return model


def build_processor(settings: dict[str, Any]) -> Any:
    """The tiny model's processor with a pixel budget that keeps ``--image-size`` images at full size."""
    from rarl.config import ModelConfig
    from rarl.models import load_processor

    side = settings["image_size"]
    return load_processor(
        ModelConfig(name_or_path=tiny_model_dir(), max_pixels=side * side, min_pixels=56 * 56)
    )


def train_samples(settings: dict[str, Any]) -> list[Any]:
    """Synthetic medical-style samples with ``--image-size`` images (enough for every step)."""
    from rarl.data.synthetic import generate_samples

    steps = settings["steps"] + settings["warmup_steps"]
    return generate_samples(max(8, steps), seed=settings["seed"], image_size=settings["image_size"])


def bench_run_config(config: BenchConfig, settings: dict[str, Any], output_dir: Path) -> Any:
    """One configuration as a RunConfig: rarl's defaults, one prompt x G completions per step, L tokens each.

    Hyper-parameters that are not about the step's shape (learning rate, beta, LoRA rank, ...) stay at
    RunConfig's defaults, so the preset measured is the preset ``rarl train`` runs.
    """
    from rarl.config import RunConfig

    run = RunConfig()
    side = settings["image_size"]
    run.model.name_or_path = tiny_model_dir()  # unused: the model and processor are passed in
    run.model.max_pixels = side * side
    run.model.min_pixels = min(run.model.min_pixels, side * side)
    run.model.attn_implementation = config.attn  # type: ignore[assignment]
    run.model.freeze_vision = config.freeze_vision
    run.model.gradient_checkpointing = config.gradient_checkpointing
    run.lora.enabled = config.lora
    run.reward.names = list(settings["rewards"])
    run.reward.weights = [1.0] * len(settings["rewards"])
    g, length = settings["num_generations"], settings["max_completion_length"]
    shape = {
        "output_dir": str(output_dir),
        "max_steps": settings["steps"] + settings["warmup_steps"],
        "per_device_train_batch_size": g,
        "gradient_accumulation_steps": 1,
        "num_generations": g,
        "max_completion_length": length,
        # random weights emit EOS anywhere: forbid it until L tokens, so every step has the same shape
        "generation_kwargs": {"min_new_tokens": length},
        "save_strategy": "no",  # no checkpoints inside a benchmark
        "logging_steps": 1,
        "report_to": [],
        "seed": settings["seed"],
    }
    if config.trl_defaults:
        # GRPOConfig as shipped for everything but the step's shape; bf16 autocast is its GPU default
        run.train.grpo = shape | {"bf16": settings["device"] == "cuda"}
    else:
        run.train.grpo.update(shape)
    run.train.grpo.update(dict(config.grpo_overrides))
    return run.validate()


def reward_device(settings: dict[str, Any]) -> str:
    """Where BERTScore runs: the model's device as build_grpo_trainer names it (so one cached scorer)."""
    return "cuda:0" if settings["device"] == "cuda" else "cpu"


def preload_rewards(settings: dict[str, Any]) -> None:
    """Load the BERTScore model before any configuration is measured, so the first one is not charged for
    it (it is loaded once per process and shared by every configuration, as in a training run)."""
    from rarl.bertscore import get_scorer
    from rarl.config import RewardConfig

    if {"accuracy", "reasoning"} & set(settings["rewards"]):
        reward = RewardConfig()
        get_scorer(
            reward.bertscore_model, batch_size=reward.bertscore_batch_size, device=reward_device(settings)
        )


def effective_beta(config: BenchConfig) -> float:
    """The KL weight a configuration trains with: TRL's default 0 or rarl's RunConfig default."""
    from rarl.config import TrainConfig

    return 0.0 if config.trl_defaults else TrainConfig().grpo["beta"]


def build_trainer(
    config: BenchConfig, settings: dict[str, Any], model: Any, processor: Any, workdir: Path
) -> Any:
    """The trainer of one configuration, always through rarl's :func:`~rarl.train.grpo.build_grpo_trainer`:
    each variant is a ``RunConfig`` (see :func:`bench_run_config`), the ``trl_default`` row one whose
    ``train.grpo`` holds only the step's shape, so GRPOConfig's own defaults decide the rest."""
    from rarl.train.grpo import build_grpo_trainer

    run = bench_run_config(config, settings, workdir / "trainer")
    return build_grpo_trainer(run, train_samples(settings), model=model, processor=processor)


# --------------------------------------------------------------------------------------------------
# timing


class StepTimer:
    """Accumulates wall time per phase of each optimizer step by wrapping the trainer's own methods."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.steps: list[dict[str, float]] = []
        self.prompt_lengths: list[int] = []
        self.completion_lengths: list[int] = []
        self._current: dict[str, float] = {}
        self._marks: dict[str, float] = {}

    def now(self) -> float:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, key: str, seconds: float) -> None:
        self._current[key] = self._current.get(key, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, key: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.add(key, self.now() - start)

    def wrap(self, trainer: Any, method: str, key: str, after: Callable[[Any], None] | None = None) -> None:
        original = getattr(trainer, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(key):
                result = original(*args, **kwargs)
            if after is not None:
                after(result)
            return result

        setattr(trainer, method, timed)

    def _record_lengths(self, result: Any) -> None:
        prompt_ids, completion_ids = result[0], result[1]
        self.prompt_lengths += [len(ids) for ids in prompt_ids]
        self.completion_lengths += [len(ids) for ids in completion_ids]

    def instrument(self, trainer: Any) -> None:
        """Wrap generation, rewards, scoring and the training step; add the step/optimizer callback."""
        from transformers import TrainerCallback

        self.wrap(trainer, "_generate", "generation", after=self._record_lengths)
        self.wrap(trainer, "_calculate_rewards", "reward")
        self.wrap(trainer, "_generate_and_score_completions", "score_total")
        self.wrap(trainer, "_prepare_inputs", "prepare_total")
        self.wrap(trainer, "training_step", "training_step_total")
        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer._current = {}
                timer._marks["step"] = timer.now()

            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer._marks["optimizer"] = timer.now()

            def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer.add("optimizer", timer.now() - timer._marks["optimizer"])

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer.steps.append(timer._split(timer.now() - timer._marks["step"]))

        trainer.add_callback(_Callback())

    def _split(self, total: float) -> dict[str, float]:
        """Turn the nested timings of one step into disjoint phases that add up to ``total``."""
        c = self._current
        split = {
            "generation": c.get("generation", 0.0),
            "reward": c.get("reward", 0.0),
            "logprob": c.get("score_total", 0.0) - c.get("generation", 0.0) - c.get("reward", 0.0),
            "forward_backward": c.get("training_step_total", 0.0) - c.get("prepare_total", 0.0),
            "optimizer": c.get("optimizer", 0.0),
        }
        # prepare_total - score_total is the buffer split/shuffle after scoring: it belongs to "other".
        split["other"] = total - sum(split.values())
        split["total"] = total
        return split


class PeakRSS:
    """Peak resident memory of this process while a configuration runs (CPU runs; sampled every 10 ms)."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


# --------------------------------------------------------------------------------------------------
# FLOPs

FORMULAS = {
    "flops_generation": "G * (2*N_lm*(P+L) + 2*N_head*L + 2*N_vis*V)",
    "flops_reference": "beta>0: G * (2*N_lm*(P+L) + 2*N_head*L + 2*N_vis*V) (reference log-probs)",
    "flops_train": "G * (k*N_lm*(P+L) + k*N_head*L + kv*N_vis*V); k=6 when the LM's weights train, 4 with "
    "LoRA/frozen (forward + input gradients, no weight gradients); kv=6 when the vision tower trains, else 2",
    "mfu": "(flops_generation + flops_reference + flops_train) / (seconds per step * peak FLOP/s)",
    "rollout_bandwidth_util": "L * decode_weight_bytes / generation seconds / peak bandwidth, where "
    "decode_weight_bytes = all weights but the vision tower (each decode step reads them once; KV cache, "
    "prefill and vision encoder ignored, so a lower bound)",
    "symbols": "N_lm = language-model parameters without embeddings and LM head, N_head = vocab*hidden, "
    "N_vis = vision-tower parameters, V = vision patches per image, P = prompt tokens (incl. image tokens), "
    "L = completion tokens, G = generations per step. Attention score FLOPs and gradient-checkpointing "
    "recomputation are not counted (model FLOPs, not hardware FLOPs).",
}


def parameter_counts(model: Any) -> dict[str, int]:
    """N_lm (LM body), N_head (vocab x hidden, tied or not), N_vis (vision tower), counted before LoRA."""
    from rarl.models import vision_tower

    visual = vision_tower(model)
    vision_ids = {id(p) for p in visual.parameters()}
    embed = model.get_input_embeddings().weight
    head_shape = model.get_output_embeddings().weight.shape
    total = 0
    for parameter in model.parameters():  # parameters() de-duplicates tied weights
        if (
            id(parameter) in vision_ids
            or parameter is embed
            or parameter is model.get_output_embeddings().weight
        ):
            continue
        total += _numel(parameter)
    return {
        "n_lm": total,
        "n_head": int(head_shape[0] * head_shape[1]),
        "n_vis": sum(_numel(p) for p in visual.parameters()),
    }


def weight_sizes(model: Any) -> tuple[int, int]:
    """Bytes of all weights, and of those a decode step reads (everything but the vision tower)."""
    from rarl.models import vision_tower

    vision_ids = {id(p) for p in vision_tower(model).parameters()}
    sizes = [(p.numel() * p.element_size(), id(p) in vision_ids) for p in model.parameters()]
    return sum(size for size, _ in sizes), sum(size for size, is_vision in sizes if not is_vision)


def _numel(parameter: Any) -> int:
    """Logical element count (4-bit bitsandbytes weights pack two values per byte)."""
    quant_state = getattr(parameter, "quant_state", None)
    if quant_state is not None and getattr(quant_state, "shape", None) is not None:
        import math

        return int(math.prod(quant_state.shape))
    return int(parameter.numel())


def step_flops(
    counts: dict[str, int],
    config: BenchConfig,
    g: int,
    prompt: float,
    length: float,
    patches: int,
    beta: float,
) -> dict[str, float]:
    """Model FLOPs of one GRPO step (see :data:`FORMULAS`)."""
    n_lm, n_head, n_vis = counts["n_lm"], counts["n_head"], counts["n_vis"]
    forward = g * (2 * n_lm * (prompt + length) + 2 * n_head * length + 2 * n_vis * patches)
    k = 4 if config.lora or config.quantize_4bit else 6
    kv = 2 if config.freeze_vision else 6
    train = g * (k * n_lm * (prompt + length) + k * n_head * length + kv * n_vis * patches)
    return {"generation": forward, "reference": forward if beta > 0 else 0.0, "train": train}


def image_patches(processor: Any, size: int) -> int:
    """Vision patches (before the 2x2 merge) the processor makes of one ``size`` x ``size`` image."""
    from PIL import Image

    grid = processor.image_processor([Image.new("RGB", (size, size))], return_tensors="pt")["image_grid_thw"]
    return int(grid[0].prod())


# --------------------------------------------------------------------------------------------------
# one configuration


def run_config(config: BenchConfig, settings: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration; never raises for out-of-memory (the row says ``oom``)."""
    import torch
    from transformers.trainer_callback import PrinterCallback

    device = settings["device"]
    row: dict[str, Any] = {
        "config": config.name,
        "description": config.description,
        "settings": asdict(config),
    }
    reason = unavailable_reason(config, device)
    if reason:
        return {**row, "status": "unavailable", "reason": reason}
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(settings["seed"])
    timer = StepTimer(device)
    try:
        with tempfile.TemporaryDirectory(prefix="rarl-bench-") as tmp, PeakRSS() as rss:
            workdir = Path(tmp)
            processor = build_processor(settings)
            model = build_model(config, settings, processor, workdir)
            counts = parameter_counts(model)
            if device == "cuda":
                # Building random weights goes through fp32 (4-bit: a save and reload): not training cost.
                torch.cuda.reset_peak_memory_stats()
            trainer = build_trainer(config, settings, model, processor, workdir)
            row["beta"] = float(trainer.beta)
            row["trainer"] = (
                "trl.GRPOTrainer (GRPOConfig defaults)"
                if config.trl_defaults
                else ("rarl.train.grpo.build_grpo_trainer")
            )
            row["reference_model"] = trainer.ref_model is not None
            row["trainable_parameters"] = sum(
                p.numel() for p in trainer.model.parameters() if p.requires_grad
            )
            weight_bytes, decode_weight_bytes = weight_sizes(trainer.model)
            timer.instrument(trainer)
            trainer.remove_callback(PrinterCallback)  # the table is the output, not a dict per step
            trainer.train()
            trainer.accelerator.free_memory()  # drop the accelerator's references before the next config
            del trainer, model
    except torch.OutOfMemoryError as exc:
        return {**row, "status": "oom", "reason": _first_line(exc), **_memory(device, None)}
    except UserError:
        raise
    except Exception as exc:  # one broken variant (e.g. a static cache a model rejects) must not end the run
        logger.exception("configuration %s failed", config.name)
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {_first_line(exc)}"}
    finally:
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    patches = image_patches(processor, settings["image_size"])
    row.update(summarise(timer, settings, config, counts, patches, row["beta"]))
    row["weight_bytes"] = weight_bytes
    row["decode_weight_bytes"] = decode_weight_bytes
    flops_peak, bandwidth_peak, source = peaks(device, settings)
    row["peak_source"] = source
    per_step = row["seconds_per_step"]["total"]
    row["achieved_tflops"] = row["flops_per_step"] / per_step / 1e12
    row["mfu"] = row["flops_per_step"] / per_step / flops_peak if flops_peak else None
    gen_s = row["seconds_per_step"]["generation"]
    decode_bytes = settings["max_completion_length"] * decode_weight_bytes
    row["rollout_bandwidth_util"] = decode_bytes / gen_s / bandwidth_peak if bandwidth_peak else None
    row.update(_memory(device, rss))
    row["status"] = "ok"
    return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _memory(device: str, rss: PeakRSS | None) -> dict[str, Any]:
    if device == "cuda":
        import torch

        return {
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
            "memory_kind": "torch.cuda.max_memory_allocated",
        }
    if rss is None:
        return {}
    return {
        "peak_memory_gib": rss.peak / 2**30,
        "peak_memory_above_baseline_gib": (rss.peak - rss.baseline) / 2**30,
        "memory_kind": "process peak RSS (CPU)",
    }


def summarise(
    timer: StepTimer,
    settings: dict[str, Any],
    config: BenchConfig,
    counts: dict[str, int],
    patches: int,
    beta: float,
) -> dict[str, Any]:
    """Average the measured steps (after warm-up) and derive throughput and FLOPs."""
    measured = timer.steps[settings["warmup_steps"] :]
    if not measured:
        raise RuntimeError(f"no measured steps (trainer ran {len(timer.steps)} steps)")
    keys = (*PHASES, "total")
    mean = {k: sum(s[k] for s in measured) / len(measured) for k in keys}
    g, length = settings["num_generations"], settings["max_completion_length"]
    prompt = sum(timer.prompt_lengths) / len(timer.prompt_lengths)
    flops = step_flops(counts, config, g, prompt, length, patches, beta)
    return {
        "steps_measured": len(measured),
        "seconds_per_step": mean,
        "seconds_per_step_each": [s["total"] for s in measured],
        "generated_tokens_per_step": g * length,
        "generated_tokens_per_s": g * length / mean["generation"],
        "samples_per_s": g / mean["total"],
        "prompt_tokens_mean": prompt,
        "image_patches": patches,
        "completion_length_min": min(timer.completion_lengths),
        "completion_length_max": max(timer.completion_lengths),
        "parameters": counts,
        "flops_split": flops,
        "flops_per_step": sum(flops.values()),
    }


# --------------------------------------------------------------------------------------------------
# output


def _memory_cell(row: dict[str, Any]) -> str:
    """Peak memory; on CPU also the growth over the process's memory before the configuration started."""
    above = row.get("peak_memory_above_baseline_gib")
    text = f"{row['peak_memory_gib']:.2f}"
    return f"{text} (+{above:.2f})" if above is not None else text


def markdown_line(row: dict[str, Any]) -> str:
    """One table row: the numbers a reader compares across configurations."""
    if row["status"] != "ok":
        return f"| {row['config']} | {row['status']}: {row.get('reason', '')} |" + " |" * 12
    s, each = row["seconds_per_step"], row["seconds_per_step_each"]
    mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "n/a"
    bw = row.get("rollout_bandwidth_util")
    bw_text = f"{100 * bw:.0f}%" if bw is not None else "n/a"
    cells = [
        row["config"],
        f"{s['total']:.3f} ({min(each):.2f}-{max(each):.2f})",
        *(f"{s[k]:.3f}" for k in ("generation", "reward", "logprob", "forward_backward")),
        f"{s['optimizer'] + s['other']:.3f}",
        f"{row['generated_tokens_per_s']:.1f}",
        f"{row['samples_per_s']:.2f}",
        _memory_cell(row),
        f"{row['achieved_tflops']:.3g}",
        mfu,
        bw_text,
        f"{row['completion_length_min']}-{row['completion_length_max']}",
    ]
    return "| " + " | ".join(cells) + " |"


TABLE_HEADER = (
    "| config | s/step (min-max) | generation s | reward s | ref logprob s | fwd+bwd s | optim+other s "
    "| gen tok/s | samples/s | peak mem GiB | TFLOP/s | MFU | rollout BW | gen len |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown section: hardware, settings, table, configuration legend, formulas."""
    env, st = report["environment"], report["settings"]
    threads = env["cpu_threads"]
    hardware = env.get("gpu") or f"CPU ({env['cpu']}, {threads} torch thread{'s' if threads != 1 else ''})"
    memory_kind = next((r.get("memory_kind") for r in report["results"] if r.get("memory_kind")), "")
    lines = [
        f"# GRPO step cost: {st['arch']} on {hardware}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Measured {env['date']} with torch {env['torch']}, transformers {env['transformers']}, "
        f"trl {env['trl']}, peft {env['peft']}. G={st['num_generations']} completions per step (one prompt), "
        f"every completion exactly {st['max_completion_length']} tokens, "
        f"{st['image_size']}x{st['image_size']} images, rewards {', '.join(st['rewards'])}; mean of "
        f"{st['steps']} steps after {st['warmup_steps']} warm-up step(s). Peak memory: {memory_kind}. "
        "Random weights (speed and memory do not depend on them).",
        "",
        TABLE_HEADER,
        *[markdown_line(r) for r in report["results"]],
        "",
        "Configurations:",
        "",
        *[f"- `{r['config']}`: {r['description']}" for r in report["results"]],
        "",
        "Peak FLOP/s and bandwidth for MFU and rollout BW: "
        + next((r["peak_source"] for r in report["results"] if r.get("peak_source")), "n/a")
        + ". Formulas: docs/benchmarks.md and the JSON's `formulas`.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any], out: Path) -> None:
    atomic_write_json(out, report)
    atomic_write_text(out.with_suffix(".md"), markdown(report))


__all__ = [
    "CONFIGS",
    "FORMULAS",
    "BenchConfig",
    "StepTimer",
    "add_arguments",
    "markdown",
    "run",
    "run_config",
    "step_flops",
]
