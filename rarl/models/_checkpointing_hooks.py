"""Keep a frozen vision tower out of the backward pass (the one touch of transformers' input-grad hooks).

Why: with gradient checkpointing, transformers' ``enable_input_require_grads`` puts a "make the output
require grad" forward hook on the input embeddings of *every* ``PreTrainedModel`` inside the model, and
Qwen2-VL's vision tower is one (its ``get_input_embeddings`` is ``patch_embed``). rarl's loader
(``activation_checkpointing_enable``), PEFT (``_prepare_model_for_gradient_checkpointing``) and TRL
(``GRPOTrainer``/``SFTTrainer.__init__`` with PEFT) each call it, and TRL's generation context calls
``gradient_checkpointing_enable`` again after every rollout. With the hook on ``patch_embed`` each frozen
vision block's input requires grad, so checkpointing keeps it and backward runs through the whole frozen
tower for a gradient nobody uses (no vision weight trains; LoRA is on the language model only).

The fix does not remove hooks after the fact (they come back at every re-enable): the frozen tower stops
exposing input embeddings, which ``enable_input_require_grads`` skips ("does not expose input
embeddings"), so no later call can put the hook back. The language model's ``embed_tokens`` hook stays:
LoRA needs gradients to flow from there. Checked against transformers 5.24 (``modeling_utils.
PreTrainedModel.enable_input_require_grads`` skips a module whose ``get_input_embeddings`` raises
``NotImplementedError``); ``tests/test_frozen_vision_backward.py`` fails loudly when that changes.
"""

from __future__ import annotations

from typing import Any

from rarl.compat import has_input_require_grads_hooks

CHECKED_TRANSFORMERS = "5.24"


def _no_input_embeddings() -> Any:
    raise NotImplementedError("rarl: a frozen vision tower exposes no input embeddings (no input-grad hook)")


def hide_frozen_tower_embeddings(model: Any, tower: Any) -> None:
    """Make the frozen ``tower`` invisible to ``enable_input_require_grads``, now and on every later call.

    Hooks already placed (a model handed in with checkpointing on) are re-placed without the tower's.
    """
    tower.get_input_embeddings = _no_input_embeddings
    for module in model.modules():
        if has_input_require_grads_hooks(module) and hasattr(module, "disable_input_require_grads"):
            module.disable_input_require_grads()
            module.enable_input_require_grads()


def restore_tower_embeddings(tower: Any) -> None:
    """Undo :func:`hide_frozen_tower_embeddings` (for a vision tower that trains again)."""
    tower.__dict__.pop("get_input_embeddings", None)
