"""Answer extraction, normalisation and matching (shared by rewards and metrics), on hand-written outputs."""

from __future__ import annotations

import pytest

from rarl.answers import (
    answers_match,
    choice_index,
    completion_text,
    exact_match,
    extract_answer,
    extract_think,
    infer_question_type,
    normalize_answer,
    reference_alternatives,
    reference_texts,
    token_f1,
    token_recall,
    yes_no,
)
from rarl.tasks import reference_forms
from rarl.tasks.vqa_med_2019 import reference_forms as vqa_med_forms

# --------------------------------------------------------------------------------------------------
# extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>lungs look clear</think><answer>No</answer>", "No"),
        ("<answer>first</answer> then <answer> second </answer>", "second"),  # the last block wins
        ("<think>reasoning</think>\n<answer>left lung", "left lung"),  # unclosed answer tag
        ("<think>the mass is on the left</think>\nLeft lung", "Left lung"),  # text after </think>
        ("The image shows a mass.\nAnswer: right kidney\nThanks", "right kidney"),
        ("Looking closely.\nFinal answer - CT", "CT"),
        ("The image shows a lesion.\nThe answer is MRI", "MRI"),
        ("The answer is: left lung.", "left lung."),
        ("Answer:\nleft lung", "left lung"),
        ("The question is unanswerable: maybe\nliver", "liver"),  # "answer" inside a word is not a cue
        ("see the answer-key\nspleen", "spleen"),
        ("Some words\n\nliver\n", "liver"),  # last non-empty line
        ("<think>only reasoning, cut off", "only reasoning, cut off"),
        ("", ""),
        (None, ""),
    ],
)
def test_extract_answer(text: str | None, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think> step 1. step 2. </think><answer>x</answer>", "step 1. step 2."),
        ("<think>a</think><think>b</think><answer>x</answer>", "b"),
        ("<think>unclosed reasoning <answer>yes</answer>", "unclosed reasoning"),
        ("opened by the template </think><answer>yes</answer>", "opened by the template"),
        ("no tags at all", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_extract_think(text: str | None, expected: str) -> None:
    assert extract_think(text) == expected


def test_completion_text_accepts_strings_and_chat_messages() -> None:
    assert completion_text("plain") == "plain"
    assert (
        completion_text([{"role": "assistant", "content": "<answer>yes</answer>"}]) == "<answer>yes</answer>"
    )
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(parts) == "ab"
    for malformed in (None, [], {}, [{"role": "assistant"}], [42], 3.5):
        assert completion_text(malformed) == ""


# --------------------------------------------------------------------------------------------------
# normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The  Left Lung.", "left lung"),
        ("Two nodules, 3.5 cm.", "2 nodules 3.5 cm"),
        ("An MRI!", "mri"),
        ("2.0", "2"),
        ("T2-weighted", "t2 weighted"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_answer(text: str | None, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_infer_question_type_keeps_its_rule() -> None:
    assert infer_question_type("Yes.") == "closed"
    assert infer_question_type(" NO ") == "closed"
    assert infer_question_type("nodule") == "open"
    assert infer_question_type("yes, left") == "open"


# --------------------------------------------------------------------------------------------------
# closed questions


@pytest.mark.parametrize(
    "pred", ["yes", "Yes.", "YES", "yeah", "Yes, the lung is abnormal", "true", "Correct"]
)
def test_yes_variants_match_yes(pred: str) -> None:
    assert answers_match(pred, "yes", "closed")
    assert not answers_match(pred, "no", "closed")


@pytest.mark.parametrize("pred", ["no", "No.", "nope", "No, there is no fracture", "false", "negative"])
def test_no_variants_match_no(pred: str) -> None:
    assert answers_match(pred, "No", "closed")
    assert not answers_match(pred, "yes", "closed")


@pytest.mark.parametrize("pred", ["nodule", "a small nodule", "nothing abnormal", "normal", "know", "eyes"])
def test_yes_no_are_whole_words_never_substrings(pred: str) -> None:
    assert yes_no(pred) is None
    assert not answers_match(pred, "no", "closed")
    assert not answers_match(pred, "yes", "closed")


def test_ambiguous_or_empty_yes_no_does_not_match() -> None:
    assert yes_no("yes, there is no mass") is None
    assert not answers_match("yes, there is no mass", "yes", "closed")
    assert not answers_match("", "yes", "closed")
    assert not answers_match("yes", "", "closed")


@pytest.mark.parametrize(
    "pred", ["not true", "Not correct.", "isn't true", "It is not correct", "that is never true", "not no"]
)
def test_negated_yes_no_word_matches_neither(pred: str) -> None:
    # "not true" says the opposite of "true": it must not score as yes (and is not guessed to be no).
    assert yes_no(pred) is None
    assert not answers_match(pred, "yes", "closed")
    assert not answers_match(pred, "no", "closed")


def test_negation_elsewhere_keeps_the_yes_no_word() -> None:
    assert answers_match("Yes, but not large", "yes", "closed")  # the "not" negates "large", not "yes"
    assert answers_match("No, it is not", "no", "closed")


@pytest.mark.parametrize(
    ("pred", "polarity"),
    [
        ("no evidence of a mass", "no"),
        ("No fracture", "no"),
        ("not seen", None),
        ("absent", None),
        ("not present", None),
    ],
)
def test_negated_wording_without_a_yes_no_word(pred: str, polarity: str | None) -> None:
    # docs/rewards.md: only yes/no words decide; "no" as a determiner is a no; "not seen" is neither.
    assert yes_no(pred) == polarity
    assert answers_match(pred, "no", "closed") is (polarity == "no")
    assert not answers_match(pred, "yes", "closed")


def test_closed_non_yes_no_uses_exact_match() -> None:
    assert answers_match("The CT.", "ct", "closed")
    assert not answers_match("CT scan", "MRI", "closed")


# --------------------------------------------------------------------------------------------------
# multiple choice


CHOICES = ["3", "4", "5", "6"]


@pytest.mark.parametrize(
    ("text", "index"), [("(A)", 0), ("B.", 1), ("C", 2), ("d)", 3), ("(b) 4", 1), ("5", 2)]
)
def test_choice_index_letters_and_option_text(text: str, index: int) -> None:
    assert choice_index(text, CHOICES) == index


def test_choice_letter_beyond_the_options_is_rejected() -> None:
    assert choice_index("(E)", CHOICES) is None
    assert choice_index("C", ["yes", "no"]) is None
    assert not answers_match("(E)", "(E)", "choice", CHOICES)  # a bad reference matches nothing


def test_option_text_is_not_misread_as_a_letter() -> None:
    options = ["A dog", "A cat"]
    assert choice_index("A cat", options) == 1
    assert choice_index("a cat.", options) == 1


def test_answers_match_choice() -> None:
    assert answers_match("(B)", "(B)", "choice", CHOICES)
    assert answers_match("B. 4", "(B)", "choice", CHOICES)
    assert answers_match("4", "(B)", "choice", CHOICES)
    assert not answers_match("(A)", "(B)", "choice", CHOICES)
    assert not answers_match("7", "(B)", "choice", CHOICES)


@pytest.mark.parametrize(
    "pred",
    [
        "(A) is wrong, it is (B)",
        "(A) or (B)",
        "A. or B.",
        "(B), not A",
        "(A) 4",
        "(B) 3, not 4",
        "(A) and (C)",
    ],
)
def test_choice_answer_naming_two_options_matches_neither(pred: str) -> None:
    for ref in ("(A)", "(B)", "(C)"):
        assert not answers_match(pred, ref, "choice", CHOICES)


def test_choice_letter_with_its_own_text_or_prose_still_matches() -> None:
    assert answers_match("(B) 4", "(B)", "choice", CHOICES)
    assert answers_match("(A) because it has three", "(A)", "choice", CHOICES)
    options = ["left side", "left"]  # one option's text inside the other's
    assert answers_match("(A) left side", "(A)", "choice", options)
    assert answers_match("(B) left", "(B)", "choice", options)
    assert not answers_match("(A) left side, not left", "(A)", "choice", options)


# --------------------------------------------------------------------------------------------------
# VQA-Med references and open-answer metrics


def test_vqa_med_alternatives_and_optional_parts() -> None:
    """VQA-Med's rules come from its task: the accepted forms are passed to the matchers as a list."""
    assert vqa_med_forms("CT (with contrast)#MRI") == ["CT with contrast", "CT", "MRI"]
    assert reference_alternatives(vqa_med_forms("ct (with contrast)#mri")) == [
        "ct with contrast",
        "ct",
        "mri",
    ]
    assert reference_texts(vqa_med_forms("CT (with contrast)#MRI")) == ["CT with contrast", "CT", "MRI"]
    assert reference_texts("left lung") == ["left lung"]
    ref = vqa_med_forms("ct (with contrast)#mri")
    for pred in ("CT", "ct with contrast", "MRI."):
        assert exact_match(pred, ref)
    assert not exact_match("ultrasound", ref)
    assert answers_match("mri", vqa_med_forms("ct#mri"), "closed")
    assert token_f1("mri", vqa_med_forms("ct#mri")) == pytest.approx(1.0)  # best alternative


def test_a_plain_reference_is_one_answer_taken_as_written() -> None:
    """Issue 21: VQA-Med's '( … )' and '#' rules applied to every dataset; PathVQA's parentheses are text."""
    ref = "early (reversible) ischemic injury"  # a PathVQA answer
    assert not exact_match("early ischemic injury", ref)
    assert exact_match("early reversible ischemic injury", ref)
    assert reference_alternatives(ref) == ["early reversible ischemic injury"]
    assert reference_texts(ref) == [ref]
    assert not exact_match("mri", "ct#mri")  # '#' is VQA-Med's separator, not everyone's
    assert reference_forms("pathvqa", ref) == [ref]
    assert reference_forms(None, ref, "vqa_med_2019") == vqa_med_forms(ref)  # old records: dataset label


def test_token_f1_and_recall_by_hand() -> None:
    # pred {left, lung, lobe} vs ref {left, lung}: precision 2/3, recall 1, F1 0.8
    assert token_f1("left lung lobe", "left lung") == pytest.approx(0.8)
    assert token_recall("left lung lobe", "left lung") == pytest.approx(1.0)
    assert token_recall("the lung", "left lung") == pytest.approx(0.5)
    assert token_f1("kidney", "left lung") == 0.0
    assert token_f1("", "left lung") == 0.0
    assert token_f1("mri", ["ct", "mri"]) == pytest.approx(1.0)  # best accepted form


def test_exact_match_normalises_both_sides() -> None:
    assert exact_match("The Left Lung.", "left lung")
    assert exact_match("two", "2")
    assert not exact_match("left", "left lung")
    assert not exact_match("", "")
