"""Closed accuracy and open recall as LLaVA-Med's medical-VQA evaluation computes them (``run_eval.py``).

Why ship a flawed metric: many medical-VLM papers report "closed accuracy / open recall" computed by this
script, so a user comparing with them needs the same arithmetic. The numbers are named ``llava_med`` and
never called accuracy without that prefix, because of these known flaws (all reproduced, all tested):

* **Substring matching, closed questions.** Both texts are lower-cased and normalised (the VQA answer
  processing of :mod:`rarl.metrics.vqa_eval`, then commas removed). An item counts as correct when the
  prediction *contains* ``yes`` or ``no`` anywhere as a substring ("nodule", "know", "not", "eyes") and
  contains the reference as a substring: "no, yes" is right whatever the reference, and "nodule" carries a
  "no".
* **Wrong closed answers can leave the denominator.** When the prediction contains ``yes``/``no`` but not
  the reference, the script records nothing for the item: it is neither right nor wrong, and the accuracy
  is taken over the remaining items. Only predictions with neither substring count as wrong. Such items
  are scored ``None`` here (excluded), and the aggregate reports how many were excluded.
* **Open recall rewards length.** Recall is the share of reference words found in the prediction, with
  true positives counted by the *prediction's* occurrences; a prediction that lists every organ recalls
  every organ, and a repeated word can push an item's recall past what it matched. Extra, wrong words cost
  nothing.
"""

from __future__ import annotations

from collections import Counter

from rarl.metrics.vqa_eval import process_answer


def normalize(text: str) -> str:
    """LLaVA-Med's ``normalize_word``: the VQA answer processing, then every comma removed."""
    return process_answer(text).replace(",", "")


def closed_correct(prediction: str, reference: str) -> float | None:
    """1.0 / 0.0 as the script scores a closed item, or None when the script drops it (see the module)."""
    pred = normalize(prediction.lower())
    gold = normalize(reference.lower())
    if "yes" in pred or "no" in pred:
        return 1.0 if gold in pred else None
    return 0.0


def _words(text: str) -> Counter[str]:
    return Counter(text.lower().strip().split())


def open_recall(prediction: str, reference: str) -> float:
    """The script's open-question recall: ``tp / (tp + fn)`` over normalised words, 0 when either is
    empty or nothing matches (``tp`` counts the prediction's occurrences of shared words)."""
    # The script normalises in run_eval and again inside calculate_f1score: twice, as here.
    pred = _words(normalize(normalize(prediction.lower())))
    gold = _words(normalize(normalize(reference.lower())))
    if not pred or not gold:
        return 0.0
    tp = sum(count for word, count in pred.items() if word in gold)
    fn = sum(count for word, count in gold.items() if word not in pred)
    return tp / (tp + fn) if tp else 0.0


__all__ = ["closed_correct", "normalize", "open_recall"]
