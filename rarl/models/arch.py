"""The benchmark architecture: Qwen2-VL-2B-Instruct's published configuration, built with random weights.

Why: speed and memory are measured on the real architecture where the weights cannot be downloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

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


def arch_with_token_ids(tokenizer: Any, attn: str) -> dict[str, Any]:
    """The real 2B architecture with the special-token ids of ``tokenizer``.

    With the real tokenizer (:func:`rarl.models.hub_layout.hub_tokenizer_dir`) these are the published ids;
    the vocabulary size stays 151,936 either way, so embedding and LM-head cost are the real ones, and the
    processor's image tokens and the model's ``image_token_id`` always agree.
    """
    import copy

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


def build_model_from_arch(arch: dict[str, Any], dtype: torch.dtype, device: str, seed: int = 0) -> Any:
    """Instantiate a Qwen2-VL with random weights from an architecture dict (benchmarks only)."""
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2VLConfig

    torch.manual_seed(seed)
    config = Qwen2VLConfig(**arch)
    # Built directly in the target dtype: an fp32 build then cast would briefly need twice the memory.
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
    return model.to(dtype)
