"""Which share of the evaluation items this process generates, under ``accelerate launch``.

Why accelerate's state: ``accelerate launch -m rarl eval ...`` starts one process per device and sets up
the process group; :class:`accelerate.PartialState` reads it (rank, world size, device) and provides the
barrier. A plain ``rarl eval`` is a world of one and never initialises anything distributed.
Items are dealt by index modulo the world size *after* the resume filter, so every process gets an equal
share of the remaining work whatever was finished before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This process's place in the launch: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This process's items: every ``world``-th one, starting at ``rank``."""
        return list(items[self.rank :: self.world])

    def wait(self) -> None:
        """Barrier: every process reaches this point before any goes on (no-op in a world of one)."""
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


def current_shard() -> Shard:
    """The shard of this process (a world of one unless started by a distributed launcher)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard()
    import torch
    from accelerate import PartialState

    from rarl.models import default_device

    # Without a GPU, ask for the CPU (gloo) backend: accelerate otherwise sees no device to distribute over.
    state = PartialState(cpu=default_device() == "cpu")
    if state.num_processes != int(os.environ["WORLD_SIZE"]):
        raise RuntimeError(
            f"launched with WORLD_SIZE={os.environ['WORLD_SIZE']} but accelerate set up "
            f"{state.num_processes} process(es)"
        )
    if state.device.type == "cuda":
        torch.cuda.set_device(state.device)  # "cuda" then means this process's GPU when the model loads
    return Shard(rank=state.process_index, world=state.num_processes)


__all__ = ["Shard", "current_shard"]
