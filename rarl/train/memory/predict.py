"""The peak memory of one GRPO step for a run configuration, predicted without a GPU.

Why: "will this config fit on my GPU?" is the first question before renting one, and the answer depends on
the whole step (KV cache during generation, the reference pass, checkpointed activations, optimizer
states), not on a formula. So the prediction runs the real step: rarl's own trainer builder
(:func:`rarl.train.grpo.build_grpo_trainer`) makes the real ``trl.GRPOTrainer`` around the real
transformers model (built from its configuration: no weights are read or allocated) with the real PEFT
LoRA, and ``trainer.train()`` runs two optimizer steps on tensors without data
(:mod:`rarl.train.memory.tracker`). The second step is the one reported (the first creates the
optimizer states, which every later step then carries; it generates a single token, since its
completions are not reported and decoding is most of the simulation's time). The trainer's own methods
mark the phases:

- ``generation``: the trainer's generation method (``rarl.compat.GRPO_TIMED_METHODS``: prompt
  processing, vision tower, prefill + decode, KV cache)
- ``reward``: its reward method (the same table)
- ``reference``: the rest of its generate-and-score step (TRL's per-token log-probs of the reference
  model when ``beta > 0``, of the old policy when needed, advantages)
- ``forward_backward``: ``training_step`` (policy forward through TRL's log-prob path, loss, backward)
- ``optimizer``: ``optimizer.step`` (between the ``on_pre_optimizer_step``/``on_optimizer_step`` callbacks)
- ``other``: the rest (gradient clipping, ``zero_grad``, logging)

``attention_kernels="cuda"`` runs attention through the kernels CUDA picks (:mod:`.kernels`); ``"cpu"``
leaves torch's CPU kernels, which is what a real CPU run uses (the validation compares against those).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.errors import UserError

if TYPE_CHECKING:
    from rarl.config import RunConfig

PHASES = ("generation", "reward", "reference", "forward_backward", "optimizer", "other")
KERNELS = ("cuda", "cpu")
STEPS = 2  # the first creates the optimizer states; the second is the steady step that is reported


@dataclass(frozen=True)
class StepShape:
    """The step's shape, overriding the config's: G completions per prompt, L tokens each, square images."""

    num_generations: int | None = None
    max_completion_length: int | None = None
    image_size: int | None = None


@dataclass
class MemoryPrediction:
    """Peak live bytes of one steady GRPO step: per phase, in total, and what was resident at its start."""

    resident_bytes: int  # live when the step starts: weights, buffers, optimizer states
    phase_peaks: dict[str, int]  # absolute peak while each phase runs
    reward_model_bytes: int  # weights of reward models (BERTScore), loaded before the simulation
    attention_kernels: str
    settings: dict[str, Any] = field(default_factory=dict)
    live_before_train: int = 0  # live when trainer.train() starts (the model, LoRA, trainer state)

    @property
    def total_bytes(self) -> int:
        return max(self.phase_peaks.values()) + self.reward_model_bytes

    def as_dict(self) -> dict[str, Any]:
        gib = 2**30
        return {
            "total_gib": self.total_bytes / gib,
            "phases_gib": {p: self.phase_peaks.get(p, 0) / gib for p in PHASES},
            "resident_gib": self.resident_bytes / gib,
            "reward_models_gib": self.reward_model_bytes / gib,
            "attention_kernels": self.attention_kernels,
            "settings": self.settings,
        }


# --------------------------------------------------------------------------------------------------
# phases of a trainer's step


def instrument_phases(
    trainer: Any,
    phase: Callable[[str], Any],
    on_step_begin: Callable[[int], None],
) -> None:
    """Run each of the trainer's own step parts inside ``phase(name)`` (a context manager); call
    ``on_step_begin(step)`` as each optimizer step starts; steps before the last generate one token.
    Used by the prediction and its validation, so both run the same steps."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from rarl.compat import check_grpo_trainer, wrap_grpo_method

    check_grpo_trainer(trainer)
    names = {"generation": "generation", "reward": "reward", "score_total": "reference"}
    names["prepare_total"] = "other"  # the buffer split; generation and scoring nest inside it

    def wrapper(name: str) -> Callable[[Any], Any]:
        def wrap(original: Any) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                with phase(name):
                    return original(*args, **kwargs)

            return run

        return wrap

    for key, name in names.items():
        wrap_grpo_method(trainer, key, wrapper(name))
    trainer.training_step = wrapper("forward_backward")(trainer.training_step)
    stack: list[Any] = []

    config = trainer.generation_config
    full = (config.max_new_tokens, config.min_new_tokens)

    class _Phases(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # Only the last step is reported; the ones before create the optimizer states, whose size
            # does not depend on the completions, so they generate one token (decoding is most of the
            # simulation's time) and the reported step generates the full length.
            last = state.global_step >= STEPS - 1
            config.max_new_tokens, config.min_new_tokens = full if last else (1, min(full[1] or 0, 1))
            on_step_begin(state.global_step)

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            context = phase("optimizer")
            context.__enter__()
            stack.append(context)

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            stack.pop().__exit__(None, None, None)

    trainer.add_callback(_Phases())
    trainer.remove_callback(PrinterCallback)


# --------------------------------------------------------------------------------------------------
# the run configuration of a prediction


def prediction_config(config: RunConfig, shape: StepShape, output_dir: Path) -> RunConfig:
    """``config`` with the step's shape applied, completions forced to full length, two steps, no saving.

    Random weights would stop at a random EOS: ``min_new_tokens`` = ``max_completion_length`` makes every
    completion the full length, the worst case a real run can reach.
    """
    if config.train.method != "grpo":
        raise UserError(f"train.method: the memory prediction covers GRPO, not {config.train.method!r}")
    if config.train.grpo.get("use_vllm"):
        raise UserError("train.grpo.use_vllm: the memory prediction covers transformers generation only")
    run = copy.deepcopy(config)
    grpo = run.train.grpo
    if shape.num_generations is not None:
        grpo["num_generations"] = shape.num_generations
        # one generation round = whole groups: keep the round's size, or make it one group
        round_size = grpo.get("per_device_train_batch_size", 8) * grpo.get("gradient_accumulation_steps", 1)
        if round_size % shape.num_generations:
            grpo["per_device_train_batch_size"] = shape.num_generations
            grpo["gradient_accumulation_steps"] = 1
    if shape.max_completion_length is not None:
        grpo["max_completion_length"] = shape.max_completion_length
    if shape.image_size is not None:
        run.model.max_pixels = shape.image_size**2
        run.model.min_pixels = min(run.model.min_pixels, shape.image_size**2)
    length = grpo.get("max_completion_length", 256)
    kwargs = dict(grpo.get("generation_kwargs") or {})
    grpo["generation_kwargs"] = kwargs | {"min_new_tokens": length}
    grpo.update(
        output_dir=str(output_dir),
        max_steps=STEPS,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        eval_strategy="no",
    )
    grpo.pop("num_train_epochs", None)
    return run.validate()


def samples_per_step(run: RunConfig) -> int:
    grpo = run.train.grpo
    return int(grpo.get("per_device_train_batch_size", 8)) * int(grpo.get("gradient_accumulation_steps", 1))


# --------------------------------------------------------------------------------------------------
# model without weights


def model_parts(run: RunConfig) -> tuple[Any, Any]:
    """The processor (real: it makes the prompts' token ids and pixel values) and the model's config.

    ``tiny`` and a local folder give their own; Qwen2-VL-2B-Instruct's hub id gives its published
    architecture and its real tokenizer (no download); another hub id is read from the local cache."""
    from transformers import AutoConfig, Qwen2VLConfig

    from rarl.models import HUB_MODEL_ID, arch_with_token_ids, load_processor, resolve_model_path
    from rarl.models.hub_layout import hub_tokenizer_dir

    name = run.model.name_or_path
    if name == HUB_MODEL_ID and not Path(name).exists():
        processor = load_processor(run.model, str(hub_tokenizer_dir()))
        arch = arch_with_token_ids(processor.tokenizer, run.model.attn_implementation)
        return processor, Qwen2VLConfig(**arch)
    path = resolve_model_path(run.model)
    processor = load_processor(run.model, path)
    try:
        model_config = AutoConfig.from_pretrained(path, attn_implementation=run.model.attn_implementation)
    except (OSError, ValueError) as exc:
        raise UserError(f"model.name_or_path: cannot read the configuration of {name!r}: {exc}") from None
    return processor, model_config


def build_fake_model(run: RunConfig, model_config: Any, dtype: Any, workdir: Path) -> Any:
    """The model from its configuration, under the enclosing simulation (fake weights), prepared as the
    loader prepares a real one; its ``name_or_path`` is a folder from which TRL's reference model builds
    the same way (a configuration and an empty weights file: every weight is initialised, fake)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForImageTextToText

    from rarl.models import apply_training_settings

    model = AutoModelForImageTextToText.from_config(
        model_config, dtype=dtype, attn_implementation=run.model.attn_implementation
    )
    apply_training_settings(model, run.model)
    if not model.config.architectures:  # a config built from an architecture dict names no class; TRL's
        model.config.architectures = [type(model).__name__]  # reference model is built from that name
    folder = workdir / "config_only"
    model.config.save_pretrained(folder)
    save_file({}, str(folder / "model.safetensors"))
    model.config.name_or_path = str(folder)
    return model


def token_ids_for_sampling(processor: Any, model_config: Any, count: int = 64) -> Any:
    """Ordinary token ids (no special, image or EOS token) that simulated generation "samples"."""
    import torch

    tokenizer = processor.tokenizer
    banned = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    for key in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        value = getattr(model_config, key, None)
        if value is not None:
            banned.add(int(value))
    vocab = model_config.get_text_config().vocab_size
    ids = [i for i in range(min(vocab, 50_000)) if i not in banned][:count]
    return torch.tensor(ids, dtype=torch.long)


# --------------------------------------------------------------------------------------------------
# the prediction


def reward_model_bytes(run: RunConfig, device: str) -> int:
    """Load the reward models (BERTScore) for real, before the simulation; their weights' bytes."""
    from rarl.bertscore import get_scorer
    from rarl.compat import bertscorer_parts

    if not {"accuracy", "reasoning"} & set(run.reward.names):
        return 0
    scorer = get_scorer(run.reward.bertscore_model, batch_size=run.reward.bertscore_batch_size, device=device)
    model, _ = bertscorer_parts(scorer.scorer)
    return sum(p.numel() * p.element_size() for p in model.parameters())


@contextlib.contextmanager
def _attention(kernels: str) -> Iterator[None]:
    if kernels == "cuda":
        from rarl.train.memory.kernels import cuda_attention_kernels

        with cuda_attention_kernels():
            yield
    else:
        yield


def predict_grpo_memory(
    config: RunConfig,
    shape: StepShape | None = None,
    attention_kernels: str = "cuda",
    target_device: str = "cuda",
) -> MemoryPrediction:
    """Predict the peak memory of one steady GRPO step of ``config`` (validated) without a GPU.

    ``target_device`` decides the precision as training would (``cuda``: ``model.dtype: auto`` is bf16, as
    on a bf16-capable GPU, and TRL's bf16 flag is on; ``cpu``: fp32); the simulated tensors themselves are
    always CPU tensors without data.
    """
    import torch

    from rarl.data.synthetic import generate_samples
    from rarl.devices import resolve_dtype
    from rarl.libconfig import library_configs, precision_flags
    from rarl.train.grpo import build_grpo_trainer
    from rarl.train.memory.tracker import LiveBytes, simulation

    if attention_kernels not in KERNELS:
        raise UserError(f"attention kernels must be one of {', '.join(KERNELS)}, got {attention_kernels!r}")
    shape = shape or StepShape()
    with tempfile.TemporaryDirectory(prefix="rarl-memory-") as tmp:
        workdir = Path(tmp)
        run = prediction_config(config, shape, workdir / "trainer")
        if target_device == "cuda":
            if run.model.dtype == "auto":
                run.model.dtype = "bfloat16"  # what auto picks on a bf16-capable GPU (Ampere or newer)
            # the GPU run's mixed-precision flags, on the CPU the simulation runs on (TRL refuses bf16
            # without a GPU unless use_cpu is set)
            for flag, value in precision_flags(run.model.dtype, "cuda").items():
                run.train.grpo.setdefault(flag, value)
            run.train.grpo["use_cpu"] = True
        built = library_configs(run, device="cpu")
        processor, model_config = model_parts(run)
        dtype = resolve_dtype(run.model.dtype, target_device)
        side = shape.image_size or int(run.model.max_pixels**0.5)
        samples = generate_samples(max(8, samples_per_step(run) * STEPS), seed=0, image_size=side)
        rewards = reward_model_bytes(run, "cpu")
        counter = LiveBytes()
        marks: dict[str, int] = {}

        def on_step_begin(step: int) -> None:
            if step == STEPS - 1:
                counter.reset_peaks()
                marks["resident"] = counter.live

        torch.manual_seed(0)
        token_ids = token_ids_for_sampling(processor, model_config)
        with simulation(counter, token_ids), _attention(attention_kernels):
            model = build_fake_model(run, model_config, dtype, workdir)
            trainer = build_grpo_trainer(run, built, samples, model=model, processor=processor)
            instrument_phases(trainer, counter.during, on_step_begin)
            marks["before_train"] = counter.live
            trainer.train()
            peaks = dict(counter.peaks)
            del trainer, model
    return MemoryPrediction(
        resident_bytes=marks["resident"],
        phase_peaks=peaks,
        reward_model_bytes=rewards,
        attention_kernels=attention_kernels,
        live_before_train=marks["before_train"],
        settings={
            "num_generations": run.train.grpo["num_generations"],
            "max_completion_length": run.train.grpo["max_completion_length"],
            "max_pixels": run.model.max_pixels,
            "per_device_train_batch_size": run.train.grpo.get("per_device_train_batch_size"),
            "gradient_accumulation_steps": run.train.grpo.get("gradient_accumulation_steps", 1),
            "dtype": str(dtype).removeprefix("torch."),
            "lora": run.lora.enabled,
            "gradient_checkpointing": run.model.gradient_checkpointing,
            "attn_implementation": run.model.attn_implementation,
            "beta": run.train.grpo.get("beta"),
        },
    )


__all__ = [
    "KERNELS",
    "PHASES",
    "STEPS",
    "MemoryPrediction",
    "StepShape",
    "instrument_phases",
    "predict_grpo_memory",
    "prediction_config",
]
