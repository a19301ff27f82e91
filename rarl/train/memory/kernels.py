"""The attention kernels a CUDA GPU would run, for a simulated step on CPU tensors without data.

Why: on a CPU, ``torch.nn.functional.scaled_dot_product_attention`` picks CPU kernels, and its math path
materialises the B x H x L x L attention matrix, which CUDA's flash and memory-efficient kernels never do.
:func:`cuda_attention_kernels` replaces each call by the CUDA kernel torch would choose, called as its own
aten operator (its meta kernel gives the CUDA shapes: the output and a B x H x L log-sum-exp, no L x L), with
the same autograd formula as on a GPU. The choice follows torch's ``sdp_utils`` order for the cases a
Qwen2-VL step meets (checked against torch 2.14; an unlisted case falls back to the math kernel, which
over-states memory rather than under-stating it):

- flash: fp16/bf16, no explicit mask, head dim <= 256 and a multiple of 8 (grouped-query heads allowed);
- memory-efficient: any other case with as many key/value heads as query heads (a boolean mask becomes
  an additive float mask first, as ``scaled_dot_product_attention`` does);
- math: grouped-query heads with a mask or fp32 (keys and values repeated, the L x L matrix kept).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from rarl.compat import aten_ops, fake_tensor_tools

ATEN = aten_ops()
IS_FAKE = fake_tensor_tools().is_fake
ORIGINAL = torch.nn.functional.scaled_dot_product_attention


def cuda_kernel(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None,
    enable_gqa: bool,
) -> str:
    """Which kernel CUDA runs for these inputs: ``flash``, ``efficient`` or ``math``."""
    head_dim = query.shape[-1]
    half = query.dtype in (torch.float16, torch.bfloat16)
    grouped = enable_gqa and query.shape[-3] != key.shape[-3]
    if half and attn_mask is None and head_dim <= 256 and head_dim % 8 == 0:
        return "flash"
    if not grouped:
        return "efficient"
    return "math"


def cuda_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` through the kernel CUDA would pick (:func:`cuda_kernel`), for
    fake tensors; real ones (a reward model scoring for real inside the simulation) run torch's own."""
    if not any(IS_FAKE(t) for t in (query, key, value)):
        return ORIGINAL(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
        )
    kernel = cuda_kernel(query, key, attn_mask, enable_gqa)
    if kernel == "flash":
        return ATEN.scaled_dot_product_flash_attention(
            query, key, value, dropout_p, is_causal, False, scale=scale
        )[0]
    if kernel == "efficient":
        bias = attn_mask
        if bias is not None and bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, dtype=query.dtype, device=query.device).masked_fill_(
                bias.logical_not(), float("-inf")
            )
        needs_grad = query.requires_grad or key.requires_grad or value.requires_grad
        return ATEN.scaled_dot_product_efficient_attention(
            query, key, value, bias, needs_grad, dropout_p, is_causal, scale=scale
        )[0]
    return ATEN.scaled_dot_product_attention_math(
        query, key, value, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa
    )[0]


@contextlib.contextmanager
def cuda_attention_kernels() -> Iterator[None]:
    """Inside, ``torch.nn.functional.scaled_dot_product_attention`` is :func:`cuda_attention`.

    Why the module attribute and not a ``TorchFunctionMode``: gradient checkpointing recomputes the forward
    inside backward, where torch-function modes are not active; the recomputation would then pick the CPU
    kernel and save other tensors than the forward did. transformers looks the function up at each call
    (``torch.nn.functional.scaled_dot_product_attention``), so forward and recomputation both see this one.
    """
    functional = torch.nn.functional
    functional.scaled_dot_product_attention = cuda_attention
    try:
        yield
    finally:
        functional.scaled_dot_product_attention = ORIGINAL


__all__ = ["cuda_attention", "cuda_attention_kernels", "cuda_kernel"]
