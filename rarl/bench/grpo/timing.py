"""Timing the trainer's own methods in place (:class:`StepTimer`) and the process's peak RSS on CPU."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rarl.compat import GRPO_TIMED_METHODS, check_grpo_trainer, generated_token_ids, wrap_grpo_method

PHASES = ("generation", "reward", "logprob", "forward_backward", "optimizer", "other")


# --------------------------------------------------------------------------------------------------
# timing


class StepTimer:
    """Accumulates wall time per phase of each optimizer step by wrapping the trainer's own methods."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.steps: list[dict[str, float]] = []
        self.prompt_lengths: list[int] = []
        self.completion_lengths: list[int] = []
        self._current: dict[str, float] = {}
        self._marks: dict[str, float] = {}

    def now(self) -> float:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def add(self, key: str, seconds: float) -> None:
        self._current[key] = self._current.get(key, 0.0) + seconds

    @contextlib.contextmanager
    def phase(self, key: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.add(key, self.now() - start)

    def timed(
        self, key: str, original: Callable[..., Any], after: Callable[[Any], None] | None = None
    ) -> Callable[..., Any]:
        """``original`` with its wall time added to phase ``key`` (and ``after`` run on its result)."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(key):
                result = original(*args, **kwargs)
            if after is not None:
                after(result)
            return result

        return timed

    def _record_lengths(self, result: Any) -> None:
        prompt_ids, completion_ids = generated_token_ids(result)
        self.prompt_lengths += [len(ids) for ids in prompt_ids]
        self.completion_lengths += [len(ids) for ids in completion_ids]

    def instrument(self, trainer: Any) -> None:
        """Wrap generation, rewards, scoring and the training step; add the step/optimizer callback.

        The first four are TRL's private methods: :mod:`rarl.compat` wraps them, after checking they still
        take what TRL 1.16 took (a changed one stops the benchmark instead of timing the wrong thing)."""
        from transformers import TrainerCallback

        check_grpo_trainer(trainer)
        for phase in GRPO_TIMED_METHODS:
            after = self._record_lengths if phase == "generation" else None
            wrap_grpo_method(trainer, phase, functools.partial(self.timed, phase, after=after))
        trainer.training_step = self.timed("training_step_total", trainer.training_step)
        timer = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer._current = {}
                timer._marks["step"] = timer.now()

            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer._marks["optimizer"] = timer.now()

            def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer.add("optimizer", timer.now() - timer._marks["optimizer"])

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                timer.steps.append(timer._split(timer.now() - timer._marks["step"]))

        trainer.add_callback(_Callback())

    def _split(self, total: float) -> dict[str, float]:
        """Turn the nested timings of one step into disjoint phases that add up to ``total``."""
        c = self._current
        split = {
            "generation": c.get("generation", 0.0),
            "reward": c.get("reward", 0.0),
            "logprob": c.get("score_total", 0.0) - c.get("generation", 0.0) - c.get("reward", 0.0),
            "forward_backward": c.get("training_step_total", 0.0) - c.get("prepare_total", 0.0),
            "optimizer": c.get("optimizer", 0.0),
        }
        # prepare_total - score_total is the buffer split/shuffle after scoring: it belongs to "other".
        split["other"] = total - sum(split.values())
        split["total"] = total
        return split


class PeakRSS:
    """Peak resident memory of this process while a configuration runs (CPU runs; sampled every 10 ms)."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
