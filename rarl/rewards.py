"""The paper's four GRPO rewards (format, length, accuracy, reasoning) with TRL's reward-function signature.

TRL's ``GRPOTrainer`` calls each function as ``f(prompts=..., completions=..., completion_ids=...,
**dataset_columns, trainer_state=..., log_extra=..., log_metric=...)`` and logs it under its ``__name__``
(``rewards/format_reward/mean`` ...). A ``None`` reward means "not applicable": TRL turns it into NaN, leaves
it out of that reward's mean and out of the weighted sum. Dataset columns used: ``answer``, ``question_type``,
``reasoning`` (``None`` for unannotated samples), ``choices``, and ``benchmark`` / ``dataset`` (whose task's
reference rules apply, :func:`rarl.tasks.reference_forms`: the same as the eval ``rarl.*`` metrics).

* format: 1.0 when the whole output is ``<think>…</think>`` then ``<answer>…</answer>``; 0.1 when some tag
  appears but that shape is not met; 0.0 with no tag at all.
* length: ``min(0.001 × completion tokens, 1.0)``, tokens counted from TRL's ``completion_ids``.
* accuracy: closed/choice → 1.0/0.0 with :func:`rarl.answers.answers_match`; open → BERTScore F1 of the
  extracted answer against the reference (best over its benchmark's accepted forms, e.g. VQA-Med's ``#``
  alternatives). Never BERTScore for closed.
* reasoning: BERTScore F1 of the ``<think>`` text against the reference reasoning; ``None`` without one.

A malformed or empty completion scores 0 (never raises): GRPO needs a number for every sampled completion.
Besides TRL's per-function mean/std, the functions log a few diagnostics through ``log_metric`` (accuracy per
question type, strict-format rate, share of samples with reference reasoning) and the extracted answer
through ``log_extra`` so that the completions table shows what was scored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any

from rarl.answers import (
    answers_match,
    completion_text,
    exact_match,
    extract_answer,
    extract_think,
    infer_question_type,
    reference_texts,
)
from rarl.bertscore import PACKAGED_MINILM, get_scorer
from rarl.errors import UserError
from rarl.tasks import reference_forms

RewardFunc = Callable[..., list[float | None]]

_NO_TAG = r"(?:(?!</?think>|</?answer>).)*"  # any text that contains none of the four tags
_STRICT_FORMAT = re.compile(rf"<think>{_NO_TAG}</think>\s*<answer>{_NO_TAG}</answer>", re.DOTALL)
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
LENGTH_SCALE = 0.001


def _texts(completions: Sequence[Any] | None) -> list[str]:
    return [completion_text(c) for c in (completions or [])]


def _as_list(values: Sequence[Any] | None, name: str, n: int) -> list[Any]:
    """A dataset column as a list of ``n`` values (all ``None`` when TRL did not pass the column)."""
    if values is None:
        return [None] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column '{name}' has {len(values)} values for {n} completions")
    return values


def _log_metric(kwargs: dict[str, Any], name: str, values: list[float]) -> None:
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and values:
        log_metric(name, sum(values) / len(values))


# --------------------------------------------------------------------------------------------------
# format and length


def format_score(text: str) -> float:
    """1.0 for exactly ``<think>…</think>\\s*<answer>…</answer>`` (surrounding whitespace allowed), 0.1 when
    any of the four tags appears otherwise, 0.0 when none does."""
    stripped = (text or "").strip()
    if _STRICT_FORMAT.fullmatch(stripped):
        return 1.0
    return 0.1 if any(tag in stripped for tag in _TAGS) else 0.0


def format_reward(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """Format reward (the paper: 1.0 strict, 0.1 partial, 0.0 none)."""
    scores: list[float | None] = [format_score(text) for text in _texts(completions)]
    _log_metric(kwargs, "format/strict_rate", [float(s == 1.0) for s in scores])
    return scores


def length_reward(
    completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any
) -> list[float | None]:
    """``min(0.001 × tokens, 1.0)``; tokens from ``completion_ids`` (outside TRL: whitespace words)."""
    texts = _texts(completions)
    if completion_ids is not None:
        counts = [len(ids) if ids is not None else 0 for ids in completion_ids]
        if len(counts) != len(texts):
            raise ValueError(f"completion_ids has {len(counts)} entries for {len(texts)} completions")
    else:
        counts = [len(text.split()) for text in texts]
    return [min(LENGTH_SCALE * count, 1.0) for count in counts]


# --------------------------------------------------------------------------------------------------
# accuracy and reasoning


def _question_type(value: Any, answer: str) -> str:
    if value is None or value == "":
        return infer_question_type(answer)
    if value not in ("closed", "open", "choice"):
        raise UserError(f"question_type {value!r} is not one of closed, open, choice")
    return str(value)


def accuracy_reward(
    completions: Sequence[Any],
    answer: Sequence[str] | None = None,
    question_type: Sequence[str] | None = None,
    choices: Sequence[Sequence[str] | None] | None = None,
    *,
    bertscore_model: str = PACKAGED_MINILM,
    bertscore_batch_size: int = 64,
    bertscore_device: str | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """Accuracy of the extracted answer: exact 1/0 for closed and choice, BERTScore F1 for open questions."""
    texts = _texts(completions)
    n = len(texts)
    if answer is None:
        raise UserError("accuracy reward needs the dataset column 'answer' (the reference short answer)")
    answers = _as_list(answer, "answer", n)
    types = _as_list(question_type, "question_type", n)
    options = _as_list(choices, "choices", n)
    benchmarks = _as_list(kwargs.get("benchmark"), "benchmark", n)
    datasets = _as_list(kwargs.get("dataset"), "dataset", n)

    preds = [extract_answer(text) for text in texts]
    scores: list[float | None] = [0.0] * n
    open_rows: list[int] = []
    by_type: dict[str, list[float]] = {"closed": [], "open": [], "choice": []}
    forms: list[list[str]] = []
    for i, (pred, ref) in enumerate(zip(preds, answers, strict=True)):
        ref = "" if ref is None else str(ref)
        forms.append(reference_forms(benchmarks[i], ref, datasets[i]))
        qtype = _question_type(types[i], ref)
        if not pred or not ref:
            scores[i] = 0.0
        elif qtype == "open":
            if exact_match(pred, forms[i]):
                scores[i] = 1.0  # identical after normalisation: no model call needed
            else:
                open_rows.append(i)
                continue  # scored in one batch below
        else:
            scores[i] = 1.0 if answers_match(pred, forms[i], qtype, options[i]) else 0.0
        by_type[qtype].append(float(scores[i] or 0.0))
    if open_rows:
        scorer = get_scorer(bertscore_model, batch_size=bertscore_batch_size, device=bertscore_device)
        f1 = scorer.f1([preds[i] for i in open_rows], [reference_texts(forms[i]) for i in open_rows])
        for i, value in zip(open_rows, f1, strict=True):
            scores[i] = max(0.0, min(1.0, value))
            by_type["open"].append(scores[i])
    for qtype, values in by_type.items():
        _log_metric(kwargs, f"accuracy/{qtype}", values)
    log_extra = kwargs.get("log_extra")
    if callable(log_extra):
        log_extra("extracted_answer", preds)
    return scores


def reasoning_reward(
    completions: Sequence[Any],
    reasoning: Sequence[str | None] | None = None,
    *,
    bertscore_model: str = PACKAGED_MINILM,
    bertscore_batch_size: int = 64,
    bertscore_device: str | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """BERTScore F1 of the ``<think>`` text against the reference reasoning; ``None`` where there is none."""
    texts = _texts(completions)
    references = _as_list(reasoning, "reasoning", len(texts))
    scores: list[float | None] = [None] * len(texts)
    rows: list[int] = []
    thinks: list[str] = []
    for i, (text, ref) in enumerate(zip(texts, references, strict=True)):
        if ref is None or not str(ref).strip():
            continue  # unannotated sample: TRL skips it (NaN) instead of punishing it
        think = extract_think(text)
        if think:
            rows.append(i)
            thinks.append(think)
        else:
            scores[i] = 0.0
    if rows:
        scorer = get_scorer(bertscore_model, batch_size=bertscore_batch_size, device=bertscore_device)
        f1 = scorer.f1(thinks, [str(references[i]) for i in rows])
        for i, value in zip(rows, f1, strict=True):
            scores[i] = max(0.0, min(1.0, value))
    _log_metric(kwargs, "reasoning/annotated_share", [float(s is not None) for s in scores])
    return scores


# --------------------------------------------------------------------------------------------------
# registry


REWARD_FUNCTIONS: dict[str, RewardFunc] = {
    "format": format_reward,
    "length": length_reward,
    "accuracy": accuracy_reward,
    "reasoning": reasoning_reward,
}
_USES_BERTSCORE = frozenset({"accuracy", "reasoning"})


def build_reward_functions(config: Any, device: str | None = None) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions and weights: ``GRPOTrainer(reward_funcs=..., args=GRPOConfig(reward_weights=...))``.

    ``config`` is a :class:`rarl.config.RewardConfig`. BERTScore settings are bound with
    :func:`functools.partial`, which TRL unwraps for the logged name (``accuracy_reward``) and which pickles.
    """
    names, weights = list(config.names), [float(w) for w in config.weights]
    if len(names) != len(weights):
        raise UserError(f"reward.weights has {len(weights)} entries but reward.names has {len(names)}")
    if len(set(names)) != len(names):
        raise UserError(f"reward.names lists a reward twice: {names}")
    funcs: list[RewardFunc] = []
    for name in names:
        if name not in REWARD_FUNCTIONS:
            raise UserError(
                f"reward.names: unknown reward {name!r}; valid options: {', '.join(REWARD_FUNCTIONS)}"
            )
        func = REWARD_FUNCTIONS[name]
        if name in _USES_BERTSCORE:
            func = functools.partial(
                func,
                bertscore_model=config.bertscore_model,
                bertscore_batch_size=config.bertscore_batch_size,
                bertscore_device=device,
            )
        funcs.append(func)
    return funcs, weights


__all__ = [
    "REWARD_FUNCTIONS",
    "accuracy_reward",
    "build_reward_functions",
    "format_reward",
    "format_score",
    "length_reward",
    "reasoning_reward",
]
