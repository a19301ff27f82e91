"""Counting the bytes a piece of torch code has live, op by op, on real tensors or on tensors without data.

Why a dispatch mode: every tensor an operator returns passes through ``__torch_dispatch__`` (forward,
backward, optimizer, generation alike), so the mode sees each new storage when it is made and — through a
weak reference on the storage — when it is freed. That is the allocator's own view of the program (one
allocation per storage), and on a real CPU run it can be checked against ``torch.profiler``'s ``[memory]``
records. Under :class:`SimulationMode` the same counting runs on fake tensors (shapes and dtypes, no data),
so the Qwen2-VL-2B step is counted without a GPU and without its memory.

Fake tensors cannot answer questions about their values, and a training step asks some: which tokens were
sampled, whether generation is finished, where the image tokens are. :class:`SimulationMode` therefore
keeps every tensor real that comes only from real tensors (token ids, masks, positions, image grids: small
integer tensors whose values decide control flow), makes only the floating-point work fake (weights,
activations, gradients, optimizer states), samples real token ids where generation would sample from fake
probabilities, and answers a value read from a fake tensor (a logged loss, a gradient norm) with 0. None of
those answers changes a shape, so none changes the memory.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from rarl.compat import aten_ops, fake_tensor_mode, fake_tensor_tools

TOOLS = fake_tensor_tools()
ATEN = aten_ops()


@dataclass
class LiveBytes:
    """The running count of bytes in live storages, and its peak per phase (a phase is a name)."""

    live: int = 0
    phase: str = "other"
    peaks: dict[str, int] = field(default_factory=dict)
    largest: int = 0  # the largest single storage seen (the tests' L x L check)
    allocations: int = 0
    _seen: dict[int, Any] = field(default_factory=dict)  # id(storage) -> weakref (dropped when freed)

    def enter(self, phase: str) -> str:
        """Switch the current phase; returns the previous one (to restore)."""
        previous, self.phase = self.phase, phase
        self.peaks[phase] = max(self.peaks.get(phase, 0), self.live)
        return previous

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[None]:
        previous = self.enter(phase)
        try:
            yield
        finally:
            self.enter(previous)

    def reset_peaks(self) -> None:
        self.peaks = {self.phase: self.live}

    def track(self, output: Any) -> None:
        """Count every storage in ``output`` not seen before (a view shares its base's storage)."""
        for tensor in tensors_in(output):
            self._track_tensor(tensor)

    def _track_tensor(self, tensor: torch.Tensor) -> None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse or nested tensors own no single storage
            return
        key = id(storage)
        if key in self._seen:
            return
        nbytes = storage.nbytes()
        self._seen[key] = weakref.ref(storage, self._freed(key, nbytes))
        self.live += nbytes
        self.allocations += 1
        self.largest = max(self.largest, nbytes)
        if self.live > self.peaks.get(self.phase, 0):
            self.peaks[self.phase] = self.live

    def _freed(self, key: int, nbytes: int) -> Any:
        def freed(_ref: Any) -> None:
            self.live -= nbytes
            self._seen.pop(key, None)

        return freed


class CountingMode(TOOLS.TorchDispatchMode):  # type: ignore[misc]
    """Counts what every operator allocates (real tensors): the counter checked against torch.profiler."""

    def __init__(self, counter: LiveBytes) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.counter.track(out)
        return out


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in an operator's arguments or result: a tensor, or tuples/lists/dicts of them (the
    shapes aten uses; a plain loop, since this runs for every operator of a simulated step)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        found: list[torch.Tensor] = []
        for item in value:
            if isinstance(item, torch.Tensor):
                found.append(item)
            elif isinstance(item, (tuple, list, dict)):
                found.extend(tensors_in(item))
        return found
    return []


def _fake(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and TOOLS.is_fake(value)


class SimulationMode(CountingMode):
    """Counts like :class:`CountingMode` while floating-point work runs on fake tensors (see the module doc).

    Enter it inside a ``FakeTensorMode(allow_non_fake_inputs=True)`` (:func:`simulation`): an operator whose
    tensor inputs are all real runs for real, as does a factory of integers or booleans (``arange``,
    ``ones(..., dtype=long)``); everything else goes to the fake mode. ``token_ids`` are the ids
    generation samples instead of reading fake probabilities (ordinary tokens, never EOS or an image token).
    """

    def __init__(self, counter: LiveBytes, token_ids: torch.Tensor) -> None:
        super().__init__(counter)
        self.token_ids = token_ids

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = self._dispatch(func, args, kwargs)
        self.counter.track(out)
        return out

    def _dispatch(self, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        tensors = tensors_in((args, kwargs))
        fake = any(_fake(t) for t in tensors)
        if func is torch.ops.aten.multinomial.default and fake:
            return self._sampled(args[0], args[1])
        if func is ATEN.local_scalar_dense and fake:
            return _placeholder_value(args[0].dtype)
        if not fake and tensors:
            with TOOLS.unset_fake_temporarily():
                return func(*args, **kwargs)
        if not tensors:  # a factory: shapes first (fake, free), made real when it holds integers
            out = func(*args, **kwargs)
            if not _integers(out):
                return out
            with TOOLS.unset_fake_temporarily():
                return func(*args, **kwargs)
        if func is torch.ops.aten.index.Tensor and fake:
            args = (args[0], _integer_indices(args[1]))
        elif func in (torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default) and fake:
            args = (args[0], _integer_indices(args[1]), *args[2:])
        return func(*args, **kwargs)

    def _sampled(self, probs: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Real token ids in the shape ``multinomial`` returns (rows x num_samples), cycling ``token_ids``."""
        rows = probs.shape[0] if probs.dim() == 2 else 1
        with TOOLS.unset_fake_temporarily():
            count = rows * num_samples
            ids = self.token_ids.repeat(count // len(self.token_ids) + 1)[:count]
            shape = (rows, num_samples) if probs.dim() == 2 else (num_samples,)
            return ids.reshape(shape).clone()


def _placeholder_value(dtype: torch.dtype) -> Any:
    if dtype == torch.bool:
        return False
    return 0.0 if dtype.is_floating_point or dtype.is_complex else 0


def _integers(out: Any) -> bool:
    """Whether a factory made only integer or boolean tensors (positions, masks, counters)."""
    found = tensors_in(out)
    return bool(found) and not any(t.dtype.is_floating_point or t.dtype.is_complex for t in found)


def _integer_indices(indices: list[Any]) -> list[Any]:
    """Real boolean mask indices as the integer indices they mean (a k-d mask is k integer indices).

    A fake tensor cannot count a mask's True entries, which decide the result's shape; the index kernels
    (CPU and CUDA) run the same ``nonzero`` internally, so the memory is the same."""
    out: list[Any] = []
    for index in indices:
        if isinstance(index, torch.Tensor) and index.dtype in (torch.bool, torch.uint8):
            with TOOLS.unset_fake_temporarily():
                # a fake mask (TRL's nan-filtered metrics) selects everything: the largest result it can give
                mask = torch.ones(index.shape, dtype=torch.bool) if _fake(index) else index.bool()
                out.extend(mask.nonzero().unbind(1))
        else:
            out.append(index)
    return out


@contextlib.contextmanager
def simulation(counter: LiveBytes, token_ids: torch.Tensor) -> Iterator[None]:
    """Run the enclosed code on fake floating-point tensors, counting its storages into ``counter``."""
    with fake_tensor_mode(), SimulationMode(counter, token_ids):
        yield


@contextlib.contextmanager
def counting(counter: LiveBytes) -> Iterator[None]:
    """Count the enclosed real code's storages into ``counter`` (nothing is faked)."""
    with CountingMode(counter):
        yield


__all__ = ["CountingMode", "LiveBytes", "SimulationMode", "counting", "simulation"]
