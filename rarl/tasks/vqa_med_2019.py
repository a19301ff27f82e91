"""VQA-Med 2019 (ImageCLEF): its loader, question typing, reference rules and the organisers' official
accuracy and BLEU.

**Loader** (:func:`load_vqa_med_2019`): the pipe-separated QA files as published (train/val
``id|question|answer``, test ``id|category|question|answer``) with their image folders. The answers are
kept as written, ``#`` alternatives and ``( … )`` parts included: the rules below read them. **Question
type**: closed when any ``#`` alternative is yes/no (:func:`rarl.answers.infer_question_type`), else open.

The 2019 challenge ranked runs by accuracy and, second, by BLEU. Both are reproduced here as the
organisers' evaluator computed them, so that rarl's ``official`` numbers are comparable with the 2019
leaderboard and with papers that used that evaluator:

**Accuracy** (:func:`official_accuracy`): exact match after the VQA challenge's answer processing
(:func:`rarl.metrics.vqa_eval.process_answer`: punctuation, number words, articles) of both texts. A
reference with ``#``-separated alternatives ("axial#transverse") is matched by any one of them. Nothing
else: no optional ``( … )`` parts, no yes/no synonyms, no answer extraction beyond what it is given.

**BLEU** (:func:`official_bleu`): both texts lower-cased, ASCII punctuation deleted, split into words (as
NLTK's ``word_tokenize`` splits punctuation-free text: on white space, with its few fused forms such as
"cannot" → "can not"), NLTK's English stopwords removed (179 words; "no" and "not" among them), every word
Snowball-stemmed (NLTK's English stemmer), then sentence BLEU against the reference (the best of its
``#`` alternatives), with the evaluator's rule that two empty word lists score 1.

Which BLEU semantics, and why: the evaluator called NLTK's ``sentence_bleu`` with default weights (0.25 for
each of 1- to 4-grams) and ``SmoothingFunction().method0``. The NLTK of 2019 (3.4 and before) *dropped*
every n-gram order with no match from the geometric mean without renormalising the weights, and returned
0 only when no unigram matched; so an exact one-word answer scored 1.0 and "left lung" for "left lobe"
scored 0.5^0.25 = 0.841. Current NLTK replaces such orders by the smallest float instead, which sends
every answer shorter than four words to ~0 — a different metric. The 2019 leaderboard (BLEU at or above
accuracy for the leading runs) was computed the first way; this module computes it that way, from the
definition, with no dependency on NLTK's BLEU code.

**rarl's reference rule** (:func:`reference_forms`, used by the ``rarl.*`` metrics and the accuracy reward
for this benchmark only): the ``#`` alternatives, and each alternative with and without its ``( … )``
parts ("ct (with contrast)" accepts "ct" and "ct with contrast"). The official scorers above do not use
the optional-part rule; no other benchmark uses either rule.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from rarl.data.loaders.common import _canonical_split, _find_file, _finish, _require_path
from rarl.data.rows import BadRow, RowCollector, image_file, text
from rarl.errors import UserError
from rarl.io import decode_line, text_lines
from rarl.metrics.vqa_eval import process_answer
from rarl.schema.sample import Sample
from rarl.tasks.base import ScoredRecord, Task

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

ALTERNATIVES = "#"

# NLTK's English stopword list as the 2019 evaluator loaded it (nltk_data "stopwords", 179 words).
NLTK_ENGLISH_STOPWORDS = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he
    him his himself she she's her hers herself it it's its itself they them their theirs themselves what
    which who whom this that that'll these those am is are was were be been being have has had having do
    does did doing a an the and but if or because as until while of at by for with about against between
    into through during before after above below to from up down in out on off over under again further
    then once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don don't should should've now d ll m o re ve y ain
    aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't
    ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't
    won won't wouldn wouldn't""".split()  # noqa: SIM905  (a word list reads best as words)
)

_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
# NLTK's Treebank tokenizer splits these fused forms (its CONTRACTIONS2/3 lists); after punctuation removal
# the ones with an apostrophe can no longer occur.
_FUSED = [
    re.compile(pattern, re.IGNORECASE)
    for pattern in (r"\b(can)(not)\b", r"\b(gim)(me)\b", r"\b(gon)(na)\b", r"\b(got)(ta)\b",
                    r"\b(lem)(me)\b", r"\b(wan)(na)(?=\s)")
]  # fmt: skip
_BLEU_WEIGHTS = (0.25, 0.25, 0.25, 0.25)


def alternatives(reference: str) -> list[str]:
    """The accepted answers of a reference: its ``#``-separated alternatives (or itself)."""
    return reference.split(ALTERNATIVES) if ALTERNATIVES in reference else [reference]


def official_accuracy(prediction: str, reference: str) -> float:
    """1.0 when the processed prediction equals one processed alternative of the reference, else 0.0."""
    predicted = process_answer(prediction)
    return float(any(process_answer(alt) == predicted for alt in alternatives(reference)))


@cache
def _stemmer():  # NLTK's Snowball stemmer is code, no data download: imported on first use
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")


def bleu_words(text: str) -> list[str]:
    """The words BLEU compares: lower case, no punctuation, no stopwords, stemmed."""
    plain = f" {text.lower().translate(_DELETE_PUNCTUATION)} "
    for fused in _FUSED:
        plain = fused.sub(r"\1 \2", plain)
    stemmer = _stemmer()
    return [stemmer.stem(word) for word in plain.split() if word not in NLTK_ENGLISH_STOPWORDS]


def _ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def sentence_bleu_2019(reference: list[str], hypothesis: list[str]) -> float:
    """Sentence BLEU with one reference, as NLTK (<= 3.4) computed it with ``method0`` (module docstring)."""
    log_sum = 0.0
    for n, weight in enumerate(_BLEU_WEIGHTS, start=1):
        hyp, ref = _ngrams(hypothesis, n), _ngrams(reference, n)
        matched = sum(min(count, ref[gram]) for gram, count in hyp.items())
        if n == 1 and matched == 0:
            return 0.0
        if matched:
            log_sum += weight * math.log(matched / max(1, sum(hyp.values())))
    c, r = len(hypothesis), len(reference)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(log_sum)


def official_bleu(prediction: str, reference: str) -> float:
    """The evaluator's BLEU of one answer: the best over the reference's alternatives."""
    hypothesis = bleu_words(prediction)
    scores = []
    for alternative in alternatives(reference):
        ref = bleu_words(alternative)
        scores.append(1.0 if not ref and not hypothesis else sentence_bleu_2019(ref, hypothesis))
    return max(scores)


_OPTIONAL_PART = re.compile(r"\([^)]*\)")


def reference_forms(reference: str) -> list[str]:
    """rarl's accepted forms of a VQA-Med reference (module docstring), natural text, in a fixed order."""
    forms: list[str] = []
    for alternative in alternatives(reference):
        variants = [alternative]
        if "(" in alternative and ")" in alternative:  # with the optional part, then without it
            variants = [re.sub(r"[()]", " ", alternative), _OPTIONAL_PART.sub(" ", alternative)]
        for variant in variants:
            variant = " ".join(variant.split())
            if variant and variant not in forms:
                forms.append(variant)
    return forms or [reference]


def item_metrics(record: ScoredRecord) -> dict[str, float | None]:
    """The 2019 evaluator's per-item accuracy and BLEU of the extracted answer (every question type)."""
    return {
        "official.accuracy": official_accuracy(record.pred_answer, record.reference_answer),
        "official.bleu": official_bleu(record.pred_answer, record.reference_answer),
    }


# --------------------------------------------------------------------------------------------------
# VQA-Med 2019: pipe-separated text. train/val: id|question|answer; test: id|category|question|answer

VQA_MED_FILES: dict[str, tuple[str, ...]] = {
    "train": ("All_QA_Pairs_train.txt",),
    "validation": ("All_QA_Pairs_val.txt",),
    "test": ("VQAMed2019_Test_Questions_w_Ref_Answers.txt",),
}
VQA_MED_IMAGE_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("Train_images",),
    "validation": ("Val_images",),
    "test": ("VQAMed2019_Test_Images",),
}
VQA_MED_RULE = "closed when the answer (any '#' alternative) is yes/no, otherwise open"


def load_vqa_med_2019(spec: DatasetSpec) -> list[Sample]:
    """ImageCLEF VQA-Med 2019 QA files (path: a QA ``.txt`` or the unpacked root folder)."""
    path = _require_path(spec)
    split = _canonical_split(spec.split)
    if path.is_dir():
        found = _find_file(path, VQA_MED_FILES.get(split, ()))
        if found is None:
            raise UserError(
                f"{path}: no VQA-Med 2019 QA file for split '{spec.split}' "
                f"(looked for {', '.join(VQA_MED_FILES.get(split, ('?',)))})"
            )
        root, path = path, found
    else:
        root = path.parent
        # a QA file names its own split (the images folder follows it, whatever spec.split says)
        split = next((key for key, names in VQA_MED_FILES.items() if path.name in names), split)
    image_root = Path(spec.image_dir) if spec.image_dir else None
    if image_root is None:
        image_root = _find_file(root, VQA_MED_IMAGE_DIRS.get(split, ()), kind="dir") or _find_file(
            path.parent, VQA_MED_IMAGE_DIRS.get(split, ()), kind="dir"
        )
    image_root = image_root or path.parent
    collector = RowCollector(str(path), spec.skip_bad)
    lines = text_lines(path.read_bytes())  # "\n" only: a U+2028 inside a question is not a line break
    from rarl.answers import infer_question_type

    for number, raw in enumerate(lines, start=1):
        line = decode_line(raw, str(path), number).rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("|")
        try:
            if len(parts) == 3:
                image_id, question, answer = parts
                category = None
            elif len(parts) == 4:
                image_id, category, question, answer = parts
            else:
                raise BadRow(
                    None, f"expected 'id|question|answer' or 'id|category|question|answer', got {line!r:.80}"
                )
            row = {"image_id": image_id, "question": question, "answer": answer}
            image_id, question, answer = (text(row, key) for key in ("image_id", "question", "answer"))
            image = image_file(image_root, f"{image_id}.jpg", "image_id")
        except BadRow as error:
            collector.bad(number, error)
            continue
        closed = any(infer_question_type(alt) == "closed" for alt in alternatives(answer))
        collector.inferred_types += 1
        collector.samples.append(
            Sample(
                id=f"{image_id}-{number}",
                image=image,
                question=question,
                answer=answer,  # '#' alternatives and '(…)' kept: reference_forms and the scorers read them
                question_type="closed" if closed else "open",
                split=spec.split,
                extra={"category": category.strip() if category else None},
            )
        )
    return _finish(collector, spec, VQA_MED_RULE)


TASK = Task(
    "vqa_med_2019", load=load_vqa_med_2019, reference_forms=reference_forms, item_metrics=item_metrics
)

__all__ = [
    "NLTK_ENGLISH_STOPWORDS",
    "TASK",
    "VQA_MED_FILES",
    "alternatives",
    "bleu_words",
    "item_metrics",
    "load_vqa_med_2019",
    "official_accuracy",
    "official_bleu",
    "reference_forms",
    "sentence_bleu_2019",
]
