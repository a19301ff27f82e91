"""The tiny offline Qwen2-VL: architecturally complete, built on the fly, loadable with ``from_pretrained``.

Why: tests, the demo and benchmarks need a real Qwen2-VL (vision tower, merger, mrope language model, a
byte-level BPE tokenizer trained on the fly, the Qwen chat template) without network access;
:func:`build_tiny_model` writes one to a directory that ``from_pretrained`` then loads like any checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

TINY_MODEL_NAME = "tiny"

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

TINY_VOCAB_SIZE = 1024
TINY_WIDTH = 64
TINY_MARKER = "rarl_tiny.json"  # written last: a directory without it was never finished


def prompt_texts() -> list[str]:
    """Every training template and inference system prompt: the start of any tiny tokenizer's corpus, so
    that the prompts rarl sends tokenize into few, stable tokens."""
    from rarl import prompts

    return [*prompts.TRAINING_TEMPLATES.values(), *prompts.INFERENCE_SYSTEM_PROMPTS.values()]


def _default_tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the prompts plus medical-VQA vocabulary."""
    vocabulary = (
        "yes no left right both neither normal abnormal opacity lesion nodule mass effusion fracture "
        "chest lung heart brain liver kidney x-ray xray ct mri ultrasound pathology modality organ "
        "image shows there is a an the of in on with without which side what where how many is are does "
        "do this scan visible present absent bright dark region circle square upper lower round small "
        "large one two three four five six seven eight nine ten zero answer think because so therefore "
        "the image appears"
    )
    words = vocabulary.split()
    corpus = prompt_texts()
    corpus += [" ".join(words[i : i + 12]) for i in range(0, len(words), 6)]
    corpus += [f"<think>{w} {v}</think><answer>{v}</answer>" for w in words[:40] for v in ("yes", "no", w)]
    return corpus


def build_tiny_model(
    path: str | Path,
    seed: int = 0,
    texts: Iterable[str] | None = None,
    vocab_size: int = TINY_VOCAB_SIZE,
    width: int = TINY_WIDTH,
    *,
    if_missing: bool = False,
) -> Path:
    """Create a tiny Qwen2-VL checkpoint (model + processor + tokenizer) at ``path``, offline.

    Deterministic for a given ``seed`` and ``texts``: the tokenizer is a byte-level BPE trained on
    ``texts`` (default: the prompts and a medical-VQA word list) with Qwen's special tokens, and the model
    weights are drawn from a seeded generator. The result loads with ``from_pretrained`` like any hub model.
    ``width`` is the language model's hidden size (4 heads, MLP twice as wide): the tests use the 64-wide
    default; a wider model gives a rank-8 LoRA adapter more room where it must learn something.

    The model is written to a temporary folder beside ``path`` and renamed into place when complete, so an
    interrupted build (Ctrl-C, kill -9, a full disk) never leaves a half-written model at ``path``. An
    existing folder at ``path`` is replaced, unless ``if_missing`` and it already holds a finished tiny
    model (a cache: when two processes build it at once, the first finished copy stays).
    """
    if width < 16 or width % 16:
        raise ValueError(f"tiny model width must be a multiple of 16 (>= 16), got {width}")
    target = Path(path)
    if if_missing and is_complete_tiny_model(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the model from colleagues once renamed
        _write_tiny_model(tmp, seed, texts, vocab_size, width)
        publish_dir(tmp, target, keep_existing=if_missing)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


STALE_BUILD_S = 3600  # a build takes seconds: a temporary folder this old was left by a killed one


def _remove_stale_builds(target: Path) -> None:
    """Delete temporary folders that killed builds of ``target`` left beside it."""
    import time

    for leftover in target.parent.glob(f".{target.name}.building-*"):
        try:
            if time.time() - leftover.stat().st_mtime > STALE_BUILD_S:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def is_complete_tiny_model(path: str | Path) -> bool:
    """Whether ``path`` holds a finished tiny model (its marker and ``config.json`` both readable).

    Why both: folders built by older rarl versions were written in place, so a killed build could leave a
    ``config.json`` (even an empty one) without the marker, which is written last.
    """
    folder = Path(path)
    try:
        json.loads((folder / TINY_MARKER).read_text(encoding="utf-8"))
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def publish_dir(built: Path, target: Path, *, keep_existing: bool) -> None:
    """Rename the finished folder ``built`` to ``target`` (same parent: the rename is atomic).

    An empty or unfinished ``target`` is moved aside and replaced; a finished one is replaced too, unless
    ``keep_existing`` (another process built the same cached model first: its copy is as good as ours).
    """
    for _ in range(3):  # a concurrent builder can slip in between the steps below: look again
        if keep_existing and is_complete_tiny_model(target):
            return
        try:
            os.replace(built, target)  # succeeds when target is absent or an empty folder
            return
        except OSError:
            if not target.exists():
                raise
        if keep_existing and is_complete_tiny_model(target):
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        try:
            os.replace(target, aside / "old")  # the old folder (or file) leaves in one step
            os.replace(built, target)
            return
        except OSError:
            continue
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    if not is_complete_tiny_model(target):
        raise OSError(f"could not move the built tiny model into {target}")


def _write_tiny_model(
    target: Path, seed: int, texts: Iterable[str] | None, vocab_size: int, width: int
) -> None:
    """The files of the tiny model, written into the (fresh, private) folder ``target``."""
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
    (target / TINY_MARKER).write_text(
        json.dumps({"seed": seed, "vocab_size": len(tokenizer), "width": width}) + "\n"
    )
