"""Model, processor, samples, rewards and the ``trl.GRPOTrainer`` of one setup, by rarl's own builders."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from rarl.bench.grpo.configs import BenchConfig
from rarl.bench.grpo.settings import BenchSettings

# --------------------------------------------------------------------------------------------------
# model, data and trainer


def tiny_model_dir() -> str:
    """The cached tiny Qwen2-VL (built offline once): the model and processor of ``--arch tiny``."""
    from rarl.config import ModelConfig
    from rarl.models import resolve_model_path

    return resolve_model_path(ModelConfig(name_or_path="tiny"))


def hub_processor_dir() -> str:
    """Qwen2-VL-2B-Instruct's real tokenizer and processor files (hub layout, written once): the 2B
    architecture is measured with real prompt lengths and the real special-token ids."""
    from rarl.models.hub_layout import hub_tokenizer_dir

    return str(hub_tokenizer_dir())


def _weight_dtype(config: BenchConfig, device: str) -> Any:
    """The same ``auto`` rule as training and evaluation (bf16 on a GPU that supports it, else fp32)."""
    from rarl.models import resolve_dtype

    return resolve_dtype(config.weights, device)


def arch_for_tokenizer(tokenizer: Any, attn: str) -> dict[str, Any]:
    """The real 2B architecture with the special-token ids of ``tokenizer`` (:mod:`rarl.models.arch`)."""
    from rarl.models.arch import arch_with_token_ids

    return arch_with_token_ids(tokenizer, attn)


def build_model(config: BenchConfig, settings: BenchSettings, processor: Any, workdir: Path) -> Any:
    """A fresh model for one configuration (random weights; 4-bit via a saved copy when quantising)."""
    import torch

    from rarl.models import build_model_from_arch, freeze_vision_tower

    device = settings.device
    dtype = _weight_dtype(config, device)
    if settings.arch == "tiny":
        from transformers import AutoModelForImageTextToText

        source: str = tiny_model_dir()
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=dtype, attn_implementation=config.attn
        )
    else:
        arch = arch_for_tokenizer(processor.tokenizer, config.attn)
        model = build_model_from_arch(arch, dtype, device, seed=settings.seed)
    # TRL builds the reference model (full fine-tuning with beta > 0) from the policy's path, and bitsandbytes
    # quantises while loading: both need the random weights saved as a checkpoint first.
    saved = workdir / "random_weights"
    if settings.arch != "tiny" and not config.lora and effective_beta(config) > 0:
        model.save_pretrained(saved)
        model.config.name_or_path = str(saved)
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


def processor_source(settings: BenchSettings) -> str:
    """Where the processor comes from: the tiny model's own, or the real Qwen2-VL-2B-Instruct one."""
    return tiny_model_dir() if settings.arch == "tiny" else hub_processor_dir()


def build_processor(settings: BenchSettings) -> Any:
    """The architecture's processor with a pixel budget that keeps ``--image-size`` images at full size."""
    from rarl.config import ModelConfig
    from rarl.models import load_processor

    side = settings.image_size
    return load_processor(
        ModelConfig(name_or_path=processor_source(settings), max_pixels=side * side, min_pixels=56 * 56)
    )


def train_samples(settings: BenchSettings) -> list[Any]:
    """Synthetic medical-style samples with ``--image-size`` images (enough for every step)."""
    from rarl.data.synthetic import generate_samples

    steps = settings.steps + settings.warmup_steps
    return generate_samples(max(8, steps), seed=settings.seed, image_size=settings.image_size)


def bench_run_config(config: BenchConfig, settings: BenchSettings, output_dir: Path) -> Any:
    """One configuration as a RunConfig: rarl's defaults, one prompt x G completions per step, L tokens each.

    Hyper-parameters that are not about the step's shape (learning rate, beta, LoRA rank, ...) stay at
    RunConfig's defaults, so the preset measured is the preset ``rarl train`` runs.
    """
    from rarl.config import RunConfig

    run = RunConfig()
    side = settings.image_size
    run.model.name_or_path = processor_source(settings)  # unused: the model and processor are passed in
    run.model.max_pixels = side * side
    run.model.min_pixels = min(run.model.min_pixels, side * side)
    run.model.attn_implementation = config.attn  # type: ignore[assignment]
    run.model.freeze_vision = config.freeze_vision
    run.model.gradient_checkpointing = config.gradient_checkpointing
    run.model.dtype = config.weights  # type: ignore[assignment]  # the mixed-precision flags follow it
    run.lora.enabled = config.lora
    run.reward.names = list(settings.rewards)
    run.reward.weights = [1.0] * len(settings.rewards)
    g, length = settings.num_generations, settings.max_completion_length
    shape = {
        "output_dir": str(output_dir),
        "max_steps": settings.steps + settings.warmup_steps,
        "per_device_train_batch_size": g,
        "gradient_accumulation_steps": 1,
        "num_generations": g,
        "max_completion_length": length,
        # random weights emit EOS anywhere: forbid it until L tokens, so every step has the same shape
        "generation_kwargs": {"min_new_tokens": length},
        "save_strategy": "no",  # no checkpoints inside a benchmark
        "logging_steps": 1,
        "report_to": [],
        "seed": settings.seed,
    }
    if config.trl_defaults:
        # GRPOConfig as shipped for everything but the step's shape; bf16 autocast is its GPU default
        run.train.grpo = shape | {"bf16": settings.device == "cuda"}
    else:
        run.train.grpo.update(shape)
    run.train.grpo.update(dict(config.grpo_overrides))
    return run.validate()


def reward_device(settings: BenchSettings) -> str:
    """Where BERTScore runs: the model's device as build_grpo_trainer names it (so one cached scorer)."""
    return "cuda:0" if settings.device == "cuda" else "cpu"


def preload_rewards(settings: BenchSettings) -> None:
    """Load the BERTScore model before any configuration is measured, so the first one is not charged for
    it (it is loaded once per process and shared by every configuration, as in a training run)."""
    from rarl.bertscore import get_scorer
    from rarl.config import RewardConfig

    if {"accuracy", "reasoning"} & set(settings.rewards):
        reward = RewardConfig()
        get_scorer(
            reward.bertscore_model, batch_size=reward.bertscore_batch_size, device=reward_device(settings)
        )


def effective_beta(config: BenchConfig) -> float:
    """The KL weight a configuration trains with: TRL's default 0 or rarl's RunConfig default."""
    from rarl.config import TrainConfig

    return 0.0 if config.trl_defaults else TrainConfig().grpo["beta"]


def build_trainer(
    config: BenchConfig, settings: BenchSettings, model: Any, processor: Any, workdir: Path
) -> Any:
    """The trainer of one configuration, always through rarl's :func:`~rarl.train.grpo.build_grpo_trainer`:
    each variant is a ``RunConfig`` (see :func:`bench_run_config`), the ``trl_default`` row one whose
    ``train.grpo`` holds only the step's shape, so GRPOConfig's own defaults decide the rest."""
    from rarl.libconfig import library_configs
    from rarl.train.grpo import build_grpo_trainer

    run = bench_run_config(config, settings, workdir / "trainer")
    built = library_configs(run, device=settings.device)
    return build_grpo_trainer(run, built, train_samples(settings), model=model, processor=processor)
