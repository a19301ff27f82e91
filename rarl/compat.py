"""Every use of a library's private API (transformers, TRL, PEFT, openai, accelerate, bert-score, torch), in
one place.

Why: pyproject pins each library to the range it was tested with, but a private name can change in any
release, and a changed one rarely fails: the benchmark would time the wrong method, the judge would send
through the wrong HTTP stack. So each touch here (1) names the version it was checked against
(:data:`TOUCHES`), and (2) checks, where it is used, that the private name still has the shape rarl relies
on, raising :class:`PrivateAPIChanged` (library, installed and checked versions, what changed) instead of
returning something silently wrong. ``tests/test_compat.py`` runs every check against the installed
libraries and shows that a changed name fails loudly; ``tests/test_architecture.py`` fails when any other
module of rarl or its tests touches a private name of these libraries.

It sits at the base of the package and imports nothing of rarl.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any


class PrivateAPIChanged(RuntimeError):
    """A library changed a private name rarl uses: a bug to fix here, never a user's mistake."""


@dataclass(frozen=True)
class PrivateTouch:
    """One private name of a library, the version it was checked against, and why rarl needs it."""

    library: str  # distribution name, for importlib.metadata
    name: str  # what is touched
    checked: str  # the library version it was last checked against
    parameters: tuple[str, ...] | None  # a method's parameter names (self excluded), or None
    why: str


# TRL's GRPOTrainer phases that rarl bench grpo times by wrapping them on the trainer instance; the keys are
# the benchmark's phase names. (``training_step`` is public and timed too.)
GRPO_TIMED_METHODS: dict[str, str] = {
    "generation": "_generate",
    "reward": "_calculate_rewards",
    "score_total": "_generate_and_score_completions",
    "prepare_total": "_prepare_inputs",
}

TOUCHES: tuple[PrivateTouch, ...] = (
    PrivateTouch(
        "trl",
        "GRPOTrainer._generate",
        "1.16.0",
        ("prompts",),
        "bench: generation time, and the prompt/completion token ids (items 0 and 1 of its tuple)",
    ),
    PrivateTouch(
        "trl",
        "GRPOTrainer._calculate_rewards",
        "1.16.0",
        ("inputs", "prompts", "completions", "completion_ids_list"),
        "bench: reward time",
    ),
    PrivateTouch(
        "trl",
        "GRPOTrainer._generate_and_score_completions",
        "1.16.0",
        ("inputs",),
        "bench: scoring time; tests: TRL's own advantages for a batch, to check the loss against the paper",
    ),
    PrivateTouch(
        "trl",
        "GRPOTrainer._prepare_inputs",
        "1.16.0",
        ("generation_batch",),
        "bench: the buffer split after scoring (transformers' Trainer method, overridden by TRL)",
    ),
    PrivateTouch(
        "transformers",
        "PreTrainedModel._require_grads_hooks",
        "5.24.0",
        None,
        "models: a model handed in with input-grad hooks already placed gets them re-placed without the "
        "frozen vision tower's (rarl/models/_checkpointing_hooks.py)",
    ),
    PrivateTouch(
        "bert-score",
        "BERTScorer._model, BERTScorer._tokenizer",
        "0.3.13",
        None,
        "tests: count the rows the BERTScore encoder embeds (no public accessor exists)",
    ),
    PrivateTouch(
        "openai",
        "DefaultAsyncHttpxClient's HTTP package (httpx2 from openai 3, httpx before)",
        "3.57.0",
        None,
        "judge: the deadline transport must subclass the transport class of the client's own HTTP package",
    ),
    PrivateTouch(
        "torch",
        "torch._subclasses.fake_tensor (FakeTensorMode and its fake_tensor_converter.tensor_memo, "
        "unset_fake_temporarily, is_fake), "
        "torch.utils._python_dispatch.TorchDispatchMode, torch.utils._pytree.tree_leaves",
        "2.14.1",
        None,
        "memory prediction: run the real GRPO step on tensors without data and count what it allocates",
    ),
    PrivateTouch(
        "torch",
        "aten._local_scalar_dense, aten._scaled_dot_product_flash_attention, "
        "aten._scaled_dot_product_efficient_attention, aten._scaled_dot_product_attention_math",
        "2.14.1",
        None,
        "memory prediction: a value read from a tensor without data, and the attention kernels CUDA picks",
    ),
)


def _touch(name: str) -> PrivateTouch:
    return next(touch for touch in TOUCHES if touch.name == name)


def _changed(touch: PrivateTouch, problem: str) -> PrivateAPIChanged:
    try:
        installed = metadata.version(touch.library)
    except metadata.PackageNotFoundError:
        installed = "(not installed)"
    return PrivateAPIChanged(
        f"{touch.library} {installed}: {touch.name} {problem}; rarl uses it for {touch.why} and was checked "
        f"against {touch.library} {touch.checked} (update rarl/compat.py)"
    )


def _checked_method(owner: Any, method: str, touch: PrivateTouch) -> Any:
    """``owner.method``, after checking it exists and takes the recorded parameters."""
    found = getattr(owner, method, None)
    if not callable(found):
        raise _changed(touch, "no longer exists")
    try:
        signature = inspect.signature(found)
    except (TypeError, ValueError):
        raise _changed(touch, "has no readable signature") from None
    names = tuple(name for name in signature.parameters if name != "self")
    if touch.parameters is not None and names != touch.parameters:
        raise _changed(touch, f"now takes {names}, not {touch.parameters}")
    return found


# --------------------------------------------------------------------------------------------------
# TRL


def check_grpo_trainer(trainer: Any) -> None:
    """Every private GRPOTrainer method rarl wraps or calls exists with its recorded parameters."""
    for method in GRPO_TIMED_METHODS.values():
        _checked_method(type(trainer), method, _touch(f"GRPOTrainer.{method}"))


def wrap_grpo_method(trainer: Any, phase: str, wrapper: Any) -> None:
    """Replace the private method timed as ``phase`` on this trainer instance by ``wrapper(original)``."""
    method = GRPO_TIMED_METHODS[phase]
    _checked_method(type(trainer), method, _touch(f"GRPOTrainer.{method}"))
    setattr(trainer, method, wrapper(getattr(trainer, method)))


def generated_token_ids(result: Any) -> tuple[list[Any], list[Any]]:
    """The prompt and completion token ids of one ``GRPOTrainer._generate`` result (its items 0 and 1)."""
    touch = _touch("GRPOTrainer._generate")
    if not isinstance(result, tuple) or len(result) < 2:
        kind = type(result).__name__
        raise _changed(touch, f"returned {kind}, not a tuple of (prompt_ids, completion_ids, ...)")
    prompt_ids, completion_ids = result[0], result[1]
    if not (isinstance(prompt_ids, list) and isinstance(completion_ids, list)):
        raise _changed(touch, "no longer returns lists of prompt and completion token ids first")
    return prompt_ids, completion_ids


def generate_and_score(trainer: Any, batch: list[dict[str, Any]]) -> dict[str, Any]:
    """TRL's own generation, rewards and advantages for ``batch`` (what one GRPO step trains on)."""
    touch = _touch("GRPOTrainer._generate_and_score_completions")
    method = _checked_method(type(trainer), "_generate_and_score_completions", touch)
    result = method(trainer, batch)
    if not isinstance(result, dict) or "advantages" not in result:
        raise _changed(touch, "no longer returns a mapping with 'advantages'")
    return result


# --------------------------------------------------------------------------------------------------
# transformers


def has_input_require_grads_hooks(module: Any) -> bool:
    """Whether ``enable_input_require_grads`` placed its hooks on ``module`` (transformers keeps them in
    ``_require_grads_hooks``; checked that the method still does)."""
    from transformers import PreTrainedModel

    touch = _touch("PreTrainedModel._require_grads_hooks")
    try:
        source = inspect.getsource(PreTrainedModel.enable_input_require_grads)
    except (OSError, TypeError):
        raise _changed(touch, "has no readable source") from None
    if "_require_grads_hooks" not in source:
        raise _changed(touch, "is no longer where enable_input_require_grads keeps its hooks")
    return bool(getattr(module, "_require_grads_hooks", None))


# --------------------------------------------------------------------------------------------------
# bert-score


def bertscorer_parts(scorer: Any) -> tuple[Any, Any]:
    """The encoder model and tokenizer inside a ``bert_score.BERTScorer``."""
    touch = _touch("BERTScorer._model, BERTScorer._tokenizer")
    model, tokenizer = getattr(scorer, "_model", None), getattr(scorer, "_tokenizer", None)
    if model is None or not hasattr(tokenizer, "batch_decode"):
        raise _changed(touch, "no longer holds its model and tokenizer there")
    return model, tokenizer


# --------------------------------------------------------------------------------------------------
# openai


def openai_http_library() -> Any:
    """The HTTP package the installed ``openai`` client is built on (``httpx2`` in openai 3, ``httpx``
    before), found from its public ``DefaultAsyncHttpxClient``: a custom transport must subclass that
    package's transport class, or the client rejects it."""
    import openai

    touch = _touch("DefaultAsyncHttpxClient's HTTP package (httpx2 from openai 3, httpx before)")
    client = getattr(openai, "DefaultAsyncHttpxClient", None)
    base = next((cls for cls in getattr(client, "__mro__", ()) if cls.__name__ == "AsyncClient"), None)
    if base is None:
        raise _changed(touch, "is not found: DefaultAsyncHttpxClient subclasses no AsyncClient")
    library = importlib.import_module(base.__module__.split(".")[0])
    needed = ("AsyncBaseTransport", "AsyncHTTPTransport", "Request", "Response", "ReadTimeout")
    missing = [name for name in needed if not hasattr(library, name)]
    if missing:
        raise _changed(touch, f"({library.__name__}) lacks {', '.join(missing)}")
    return library


# --------------------------------------------------------------------------------------------------
# torch (tensors without data, for the memory prediction)


def _torch_touch(prefix: str) -> PrivateTouch:
    return next(touch for touch in TOUCHES if touch.library == "torch" and touch.name.startswith(prefix))


def fake_tensor_tools() -> Any:
    """torch's fake-tensor machinery as one namespace: ``FakeTensorMode``, ``unset_fake_temporarily``,
    ``is_fake``, ``TorchDispatchMode`` and ``tree_leaves`` (private to torch; checked they still exist)."""
    import types

    touch = _torch_touch("torch._subclasses")
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode, is_fake, unset_fake_temporarily
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves
    except ImportError as exc:
        raise _changed(touch, f"cannot be imported ({exc})") from None
    parameters = inspect.signature(FakeTensorMode).parameters
    if "allow_non_fake_inputs" not in parameters:
        raise _changed(touch, "FakeTensorMode no longer takes allow_non_fake_inputs")
    return types.SimpleNamespace(
        FakeTensorMode=FakeTensorMode,
        unset_fake_temporarily=unset_fake_temporarily,
        is_fake=is_fake,
        TorchDispatchMode=TorchDispatchMode,
        tree_leaves=tree_leaves,
    )


@contextlib.contextmanager
def fake_tensor_mode() -> Iterator[Any]:
    """Inside: new tensors are fake (``FakeTensorMode(allow_non_fake_inputs=True)``), and a module whose
    parameters are fake can still be converted (``module.to(dtype)``).

    Why the second part: torch 2.14's ``nn.Module._apply`` swaps a fake parameter with its converted copy
    (``torch.utils.swap_tensors``), which refuses a tensor with a weak reference, and the fake mode's own
    memo (``fake_tensor_converter.tensor_memo``) holds one to every fake tensor. For the two tensors being
    swapped that memo entry is dropped first (it only speeds up converting the same real tensor twice).
    """
    import torch.utils

    tools = fake_tensor_tools()
    mode = tools.FakeTensorMode(allow_non_fake_inputs=True)
    converter = getattr(mode, "fake_tensor_converter", None)
    memo = getattr(converter, "tensor_memo", None)
    if memo is None or not hasattr(memo, "items"):
        raise _changed(_torch_touch("torch._subclasses"), "FakeTensorMode has no fake_tensor_converter memo")
    original = torch.utils.swap_tensors

    def swap_tensors(t1: Any, t2: Any) -> None:
        for key, value in list(memo.items()):
            if value is t1 or value is t2:
                del memo[key]
        original(t1, t2)

    torch.utils.swap_tensors = swap_tensors
    try:
        with mode:
            yield mode
    finally:
        torch.utils.swap_tensors = original


def aten_ops() -> Any:
    """The private aten operators the memory prediction intercepts or calls (checked they still exist)."""
    import types

    import torch

    touch = _torch_touch("aten._local_scalar_dense")
    aten = torch.ops.aten
    names = (
        "_local_scalar_dense",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_attention_math",
    )
    found = {}
    for name in names:
        op = getattr(aten, name, None)
        if op is None or not hasattr(op, "default"):
            raise _changed(touch, f"aten.{name} no longer exists")
        found[name.lstrip("_")] = op.default
    return types.SimpleNamespace(**found)


__all__ = [
    "GRPO_TIMED_METHODS",
    "TOUCHES",
    "PrivateAPIChanged",
    "PrivateTouch",
    "aten_ops",
    "bertscorer_parts",
    "check_grpo_trainer",
    "fake_tensor_mode",
    "fake_tensor_tools",
    "generate_and_score",
    "generated_token_ids",
    "has_input_require_grads_hooks",
    "openai_http_library",
    "wrap_grpo_method",
]
