"""The VQA answer processing, VQA-Med 2019's official accuracy and BLEU, and LLaVA-Med's metrics, each
against cases worked out by hand from the published definitions (quirks included)."""

from __future__ import annotations

import math

import pytest

from rarl.metrics import llava_med
from rarl.metrics.vqa_eval import process_answer, process_digit_article, process_punctuation
from rarl.tasks import vqa_med_2019 as med


@pytest.mark.parametrize(
    ("text", "processed"),
    [
        ("left, right", "left right"),  # the comma touches a space: deleted
        ("t2-weighted", "t2 weighted"),  # the hyphen touches none: a space
        ("mr - t2", "mr  t2"),  # " -" touches: deleted, the two spaces stay (split later)
        ("1,000 mm", "1000 mm"),  # a comma between digits: every mark deleted
        ("e.g. 3.5 cm.", "eg 3.5 cm"),  # periods go unless a digit follows
        ("ratio: 50%", "ratio: 50%"),  # colon and percent are not in the list
    ],
)
def test_vqa_punctuation(text: str, processed: str) -> None:
    assert process_punctuation(text) == processed


def test_vqa_period_count_quirk() -> None:
    """re.UNICODE (32) passed as re.sub's count: the 33rd period survives."""
    assert process_punctuation("x." * 33) == "x" * 33 + "."


@pytest.mark.parametrize(
    ("text", "processed"),
    [("The two lesions", "2 lesions"), ("None", "0"), ("an MRI", "mri"), ("dont know", "don't know")],
)
def test_vqa_digits_and_articles(text: str, processed: str) -> None:
    assert process_digit_article(text) == processed


@pytest.mark.parametrize(
    ("prediction", "reference", "accuracy"),
    [
        ("Axial", "axial", 1.0),
        ("transverse", "axial#transverse", 1.0),  # any alternative
        ("axial transverse", "axial#transverse", 0.0),
        ("one", "1", 1.0),  # number words
        ("yeah", "yes", 0.0),  # no synonyms
        ("ct", "ct (contrast)", 0.0),  # no optional parts: "ct contrast"
        ("the lung.", "lung", 1.0),  # article, final period
        ("", "ct", 0.0),
        ("face sinuses and neck", "face, sinuses, and neck#skull and contents", 1.0),
    ],
)
def test_vqa_med_official_accuracy(prediction: str, reference: str, accuracy: float) -> None:
    assert med.official_accuracy(prediction, reference) == accuracy


def test_nltk_stopword_list_has_its_179_words() -> None:
    assert len(med.NLTK_ENGLISH_STOPWORDS) == 179
    assert {"no", "not", "the", "of", "is"} <= med.NLTK_ENGLISH_STOPWORDS
    assert not {"yes", "left", "right", "lung"} & med.NLTK_ENGLISH_STOPWORDS


@pytest.mark.parametrize(
    ("prediction", "reference", "bleu"),
    [
        ("axial", "axial", 1.0),  # exact short answer: 1.0, as on the 2019 leaderboard
        ("Axial!", "axial#transverse", 1.0),
        ("left lung", "left lobe", 0.5**0.25),  # p1 = 1/2; higher orders have no match and are dropped
        ("ct scan", "ct", 0.5**0.25),  # longer than the reference: no brevity penalty
        ("right upper lobe mass", "left upper lobe mass", (0.75 * (2 / 3) * 0.5) ** 0.25),  # 4-gram dropped
        ("ct", "ct scan", math.exp(1 - 2 / 1)),  # p1 = 1, brevity penalty exp(1 - r/c)
        ("no", "no", 1.0),  # both empty after stopword removal
        ("no", "yes", 0.0),  # nothing left to match
        ("2", "two", 0.0),  # BLEU maps no number words (accuracy does)
        ("cannot be assessed", "assessed", 1.0),  # cannot -> can not; can, not, be are stopwords; stems
        ("lungs", "lung", 1.0),  # Snowball stems
        ("", "ct", 0.0),
        ("the", "lung", 0.0),  # only stopwords: an empty hypothesis matches nothing
        ("not", "no", 1.0),  # only stopwords on both sides: the evaluator's empty-vs-empty rule scores 1
        ("is it", "", 1.0),  # an empty reference and a stopword-only prediction: 1 too
        ("3", "3", 1.0),  # digits are words
        ("two", "two#2", 1.0),  # the best alternative
    ],
)
def test_vqa_med_official_bleu(prediction: str, reference: str, bleu: float) -> None:
    assert med.official_bleu(prediction, reference) == pytest.approx(bleu, abs=1e-12)


@pytest.mark.parametrize(
    ("prediction", "reference", "verdict"),
    [
        ("yes", "yes", 1.0),
        ("Yes, there is.", "yes", 1.0),
        ("no", "yes", None),  # contains "no", not the reference: the script drops the item
        ("a nodule", "yes", None),  # "no" inside "nodule" is enough to be dropped
        ("no, yes", "no", 1.0),  # both words: right whatever the reference
        ("maybe", "no", 0.0),  # neither word: the only way to be counted wrong
        ("eyes", "yes", 1.0),  # "yes" inside "eyes"
    ],
)
def test_llava_med_closed(prediction: str, reference: str, verdict: float | None) -> None:
    assert llava_med.closed_correct(prediction, reference) == verdict


@pytest.mark.parametrize(
    ("prediction", "reference", "recall"),
    [
        ("left lung", "left lung", 1.0),
        ("the left", "left lung", 0.5),
        ("left left", "left lung", 2 / 3),  # tp counts the prediction's two "left"
        ("heart, lungs, liver, kidneys", "lungs", 1.0),  # length is free
        ("one", "1", 1.0),
        ("", "lung", 0.0),
        ("lung", "", 0.0),
    ],
)
def test_llava_med_open_recall(prediction: str, reference: str, recall: float) -> None:
    assert llava_med.open_recall(prediction, reference) == pytest.approx(recall)


def test_vqa_answer_processing_is_what_both_families_share() -> None:
    assert process_answer("  The  Axial\tplane. ") == "axial plane"
    assert llava_med.normalize("1,000 mm, left") == "1000 mm left"
