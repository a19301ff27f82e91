"""Model and processor loading, LoRA settings, and the tiny offline Qwen2-VL.

Why: users load ``Qwen/Qwen2-VL-2B-Instruct`` (or any Qwen2-VL-family checkpoint) from the hub or a local
directory; tests, the demo and benchmarks need the same code path without network access. So the real
loading code is kept, and :func:`build_tiny_model` writes a tiny but architecturally complete Qwen2-VL
(vision tower, merger, mrope language model, a byte-level BPE tokenizer trained on the fly, the Qwen chat
template) to a directory that ``from_pretrained`` then loads like any checkpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rarl.config import LoraSettings, ModelConfig
from rarl.errors import UserError

if TYPE_CHECKING:  # heavy imports stay out of CLI start-up
    import torch
    from peft import LoraConfig
    from transformers import PreTrainedModel, ProcessorMixin

logger = logging.getLogger(__name__)

TINY_MODEL_NAME = "tiny"

# LoRA must touch only the language model: Qwen2-VL's vision blocks use fused `qkv`/`proj`, but a regex on
# the module path makes the restriction explicit instead of relying on that naming accident.
LANGUAGE_MODEL_PATTERN = r".*language_model.*\.({modules})$"

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# The chat template Qwen2-VL-Instruct ships (images become <|vision_start|><|image_pad|><|vision_end|>).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The published configuration of Qwen2-VL-2B-Instruct (config.json on the hub), so that speed and memory
# can be measured on the real architecture with random weights where the weights cannot be downloaded.
QWEN2_VL_2B_ARCH: dict[str, Any] = {
    "text_config": {
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    },
    "vision_config": {
        "depth": 32,
        "embed_dim": 1280,
        "hidden_size": 1536,
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "hidden_act": "quick_gelu",
    },
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "tie_word_embeddings": True,
}


# --------------------------------------------------------------------------------------------------
# dtype / device


def resolve_dtype(name: str, device: str | None = None) -> torch.dtype:
    """``auto`` means bf16 on a CUDA GPU that supports it and fp32 on CPU (CPU bf16 is slow and lossy)."""
    import torch

    if name == "auto":
        on_gpu = (device or default_device()) == "cuda"
        return torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------------------------------
# loading


def resolve_model_path(config: ModelConfig, cache_dir: str | Path = "outputs/tiny_model") -> str:
    """Map ``tiny`` to a built tiny checkpoint (built once per seed); pass anything else through."""
    if config.name_or_path != TINY_MODEL_NAME:
        return config.name_or_path
    path = Path(cache_dir) / f"seed{config.tiny_seed}"
    if not (path / "config.json").exists():
        build_tiny_model(path, seed=config.tiny_seed)
    return str(path)


def load_processor(config: ModelConfig, model_path: str | None = None) -> ProcessorMixin:
    """Load the processor with the pixel budget from config (caps the number of visual tokens)."""
    from transformers import AutoProcessor

    path = model_path or resolve_model_path(config)
    try:
        processor = AutoProcessor.from_pretrained(
            path, size={"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels}
        )
    except OSError as exc:
        raise UserError(f"cannot load processor from '{path}': {_first_line(exc)}") from None
    # Generation in batches needs left padding so every prompt ends where generation starts.
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(
    config: ModelConfig, model_path: str | None = None, device: str | None = None
) -> PreTrainedModel:
    """Load a Qwen2-VL-family model by hub id or local path, with the configured dtype and attention.

    The vision tower is frozen when ``config.freeze_vision`` (the paper trains only the language model).
    An adapter in ``config.adapter_path`` is loaded on top for evaluation.
    """
    from transformers import AutoModelForImageTextToText

    path = model_path or resolve_model_path(config)
    device = device or default_device()
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, dtype=resolve_dtype(config.dtype, device), attn_implementation=config.attn_implementation
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model from '{path}': {_first_line(exc)}") from None
    if config.freeze_vision:
        freeze_vision_tower(model)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.adapter_path:
        model = load_adapter(model, config.adapter_path)
    return model.to(device)


def load_adapter(model: PreTrainedModel, adapter_path: str) -> PreTrainedModel:
    """Attach a trained PEFT adapter (LoRA) for inference."""
    from peft import PeftModel

    if not (Path(adapter_path) / "adapter_config.json").exists():
        raise UserError(f"{adapter_path}: no adapter_config.json here (expected a PEFT adapter directory)")
    return PeftModel.from_pretrained(model, adapter_path)


def vision_tower(model: Any) -> Any:
    """The vision encoder module (``visual``) of a Qwen2-VL model, however deeply wrapped (PEFT, DDP)."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "visual":
            return module
    raise ValueError("model has no vision tower named 'visual'")


def freeze_vision_tower(model: Any) -> None:
    """Stop gradients into the vision encoder and merger."""
    for parameter in vision_tower(model).parameters():
        parameter.requires_grad_(False)


def lora_config(settings: LoraSettings) -> LoraConfig:
    """PEFT config restricted to the language model's projections named in ``settings.target_modules``."""
    from peft import LoraConfig

    modules = "|".join(sorted(settings.target_modules))
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=LANGUAGE_MODEL_PATTERN.format(modules=modules),
        task_type="CAUSAL_LM",
        bias="none",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# tiny offline model

TINY_VOCAB_SIZE = 1024
TINY_WIDTH = 64


def _default_tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the prompts plus medical-VQA vocabulary."""
    from rarl import prompts

    vocabulary = (
        "yes no left right both neither normal abnormal opacity lesion nodule mass effusion fracture "
        "chest lung heart brain liver kidney x-ray xray ct mri ultrasound pathology modality organ "
        "image shows there is a an the of in on with without which side what where how many is are does "
        "do this scan visible present absent bright dark region circle square upper lower round small "
        "large one two three four five six seven eight nine ten zero answer think because so therefore "
        "the image appears"
    )
    words = vocabulary.split()
    corpus = [template for template in prompts.TRAINING_TEMPLATES.values()]
    corpus += list(prompts.INFERENCE_SYSTEM_PROMPTS.values())
    corpus += [" ".join(words[i : i + 12]) for i in range(0, len(words), 6)]
    corpus += [f"<think>{w} {v}</think><answer>{v}</answer>" for w in words[:40] for v in ("yes", "no", w)]
    return corpus


def build_tiny_model(
    path: str | Path,
    seed: int = 0,
    texts: Iterable[str] | None = None,
    vocab_size: int = TINY_VOCAB_SIZE,
    width: int = TINY_WIDTH,
) -> Path:
    """Create a tiny Qwen2-VL checkpoint (model + processor + tokenizer) at ``path``, offline.

    Deterministic for a given ``seed`` and ``texts``: the tokenizer is a byte-level BPE trained on
    ``texts`` (default: the prompts and a medical-VQA word list) with Qwen's special tokens, and the model
    weights are drawn from a seeded generator. The result loads with ``from_pretrained`` like any hub model.
    ``width`` is the language model's hidden size (4 heads, MLP twice as wide): the tests use the 64-wide
    default; a wider model gives a rank-8 LoRA adapter more room where it must learn something.
    """
    if width < 16 or width % 16:
        raise ValueError(f"tiny model width must be a multiple of 16 (>= 16), got {width}")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)

    corpus = list(texts) if texts is not None else _default_tokenizer_corpus()
    tokenizer_model = Tokenizer(models.BPE())
    tokenizer_model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer_model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer_model.train_from_iterator(sorted(corpus), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_model,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
        padding_side="left",
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    # mrope splits half of each head's rotary dims (4 heads: width / 8) into temporal/height/width parts;
    # [2, 3, 3] at the default width, as Qwen2-VL's [16, 24, 24] for 128-dim heads.
    half = width // 8
    mrope = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]

    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": width,  # the merger projects vision features to the language model's width
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(target)

    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 112 * 112}),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(target)
    (target / "rarl_tiny.json").write_text(
        json.dumps({"seed": seed, "vocab_size": len(tokenizer), "width": width}) + "\n"
    )
    return target


def build_model_from_arch(arch: dict[str, Any], dtype: torch.dtype, device: str, seed: int = 0) -> Any:
    """Instantiate a Qwen2-VL with random weights from an architecture dict (benchmarks only)."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    config = Qwen2VLConfig(**arch)
    # Built directly in the target dtype: an fp32 build then cast would briefly need twice the memory.
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    return model.to(dtype)
