"""FLOPs of one GRPO step from parameter and token counts (the formulas go into the report)."""

from __future__ import annotations

from typing import Any

from rarl.bench.grpo.configs import BenchConfig

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
