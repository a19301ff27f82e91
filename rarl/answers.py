"""Answer extraction and normalisation, shared by the training rewards and the evaluation metrics.

Why one module: the accuracy reward that shapes training and the accuracy that is reported afterwards must
agree on what "the model's answer" is and when it matches the reference. Both import from here:

* :func:`completion_text` turns whatever TRL hands a reward function (a string or chat messages) into text;
* :func:`extract_think` / :func:`extract_answer` pull out the ``<think>`` and ``<answer>`` parts, with
  fallbacks for outputs that forgot the tags ("Answer: ...", the text after ``</think>``, the last line);
* :func:`normalize_answer` makes surface variants compare equal (case, punctuation but not decimal points,
  articles, number words);
* :func:`answers_match` decides closed / multiple-choice correctness (yes/no synonyms found as whole words,
  never substrings such as "no" in "nodule"; choice letters validated against the number of choices);
  a reference is one answer as written, or the list of forms its benchmark accepts (VQA-Med's ``#`` and
  ``( … )`` rules live in :mod:`rarl.tasks.vqa_med_2019`, not here);
* :func:`exact_match`, :func:`token_f1`, :func:`token_recall` are the open-ended rule metrics.

These are rarl's own matching rules (the ``rarl.*`` metrics): stricter than LLaVA-Med's substring matching,
laxer than raw string equality, and not any benchmark's official scorer.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

YES_NO = frozenset({"yes", "no"})

# Whole-word synonyms of yes and no in a closed answer. Deliberately short: words such as "present" or
# "normal" carry clinical meaning that depends on the question, so they are not treated as yes/no.
YES_WORDS = frozenset({"yes", "yeah", "yep", "true", "correct", "affirmative"})
NO_WORDS = frozenset({"no", "nope", "false", "incorrect", "negative"})

# Words that negate a following yes/no word in the same clause ("not true", "isn't correct"); "n't" is
# spelled out as "not" before the words are compared.
NEGATORS = frozenset({"not", "never", "neither", "nor", "cannot", "hardly"})

ARTICLES = frozenset({"a", "an", "the"})

NUMBER_WORDS = {
    "zero": "0", "none": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13",
    "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18",
    "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
    "seventy": "70", "eighty": "80", "ninety": "90", "hundred": "100",
    "first": "1st", "second": "2nd", "third": "3rd",
}  # fmt: skip

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_ANY_TAG = re.compile(r"</?(?:think|answer)>", re.IGNORECASE)
# "Answer: X", "Final answer - X", "the answer is X" (the last such phrase wins).
_ANSWER_COLON = re.compile(r"\banswer\s*(?:is\b\s*[:\-]?|:|-(?=\s))\s*(.+)", re.IGNORECASE)
# Punctuation except a decimal point between digits ("3.5 cm" keeps its point, "cm." loses it).
_PUNCT = re.compile(r"(?!(?<=\d)\.(?=\d))[^\w\s]|_")
_CHOICE_LETTER = re.compile(r"^\s*(?:\(([A-Za-z])\)|([A-Za-z])[.):](?=\s|$)|([A-Za-z])\s*$)")
_OPTION_PREFIX = re.compile(r"^\s*(?:\([A-Za-z]\)|[A-Za-z][.)])\s+")
# A letter naming an option after the leading one: "(B)" anywhere, or a capital letter standing alone
# ("it is B", "A or B."), except "A"/"I" used as a word ("A cat", "I think").
_OTHER_LETTER = re.compile(r"\(([A-Za-z])\)|(?<![\w'(-])([A-Z])(?![\w')-])")
_WORD_LETTER = re.compile(r"[AI]\s+[a-z]")
_CLAUSE_BREAK = re.compile(r"[,;:.!?]+|\bbut\b", re.IGNORECASE)
_NOT_CONTRACTION = re.compile(r"n['’]t\b", re.IGNORECASE)


# --------------------------------------------------------------------------------------------------
# completions


def completion_text(completion: Any) -> str:
    """The generated text of one completion as TRL passes it to a reward function.

    TRL passes plain strings for standard prompts and a list of chat messages (``[{"role": "assistant",
    "content": ...}]``) for conversational ones; ``content`` may itself be a list of typed parts. Anything
    else (``None``, a malformed message) yields ``""`` so that a reward scores it 0 instead of raising.
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        return "".join(_content_text(m.get("content")) for m in (assistant or messages))
    return ""


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(str(part.get("text") or ""))
        return "".join(parts)
    return ""


# --------------------------------------------------------------------------------------------------
# extraction


def extract_think(text: str | None) -> str:
    """The reasoning inside the last complete ``<think>...</think>`` block.

    An unclosed ``<think>`` yields the text up to ``<answer>`` (or the end); a bare ``</think>`` (some chat
    templates open the tag in the prompt) yields the text before it. No tags at all: ``""`` — untagged
    prose is not credited as reasoning.
    """
    if not text:
        return ""
    blocks = _THINK_BLOCK.findall(text)
    if blocks:
        return blocks[-1].strip()
    lower = text.lower()
    start = lower.rfind("<think>")
    if start >= 0:
        rest = text[start + len("<think>") :]
        end = rest.lower().find("<answer>")
        return (rest if end < 0 else rest[:end]).strip()
    end = lower.find("</think>")
    if end >= 0:
        return _ANY_TAG.sub(" ", text[:end]).strip()
    return ""


def extract_answer(text: str | None) -> str:
    """The final answer of a generated text.

    Order: the last complete ``<answer>...</answer>`` block; the text after an unclosed ``<answer>``; the
    text after the last ``</think>``; the last "Answer: ..." phrase; the last non-empty line. Tags left in
    the result are removed. Never raises; empty input gives ``""``.
    """
    if not text:
        return ""
    blocks = _ANSWER_BLOCK.findall(text)
    if blocks:
        return _clean(blocks[-1])
    lower = text.lower()
    start = lower.rfind("<answer>")
    if start >= 0:
        return _clean(text[start + len("<answer>") :])
    end = lower.rfind("</think>")
    if end >= 0:
        after = _clean(text[end + len("</think>") :])
        if after:
            return _answer_from_prose(after)
        # Only reasoning was produced: fall through to the prose rules on the whole text.
    return _answer_from_prose(_clean(_THINK_BLOCK.sub(" ", text)) or _clean(text))


def _answer_from_prose(text: str) -> str:
    matches = list(_ANSWER_COLON.finditer(text))
    if matches:
        return _clean(matches[-1].group(1).splitlines()[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _clean(text: str) -> str:
    return _ANY_TAG.sub(" ", text).strip()


# --------------------------------------------------------------------------------------------------
# normalisation


def _basic_normalize(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s.]", " ", text.lower())).strip(" .")


def normalize_answer(text: str | None) -> str:
    """Lower-case, strip punctuation (keeping decimal points), drop articles, map number words to digits.

    ``"The  Left Lung."`` → ``"left lung"``; ``"Two nodules, 3.5 cm"`` → ``"2 nodules 3.5 cm"``.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _PUNCT.sub(" ", text)
    words = []
    for word in text.split():
        if word in ARTICLES:
            continue
        word = NUMBER_WORDS.get(word, word)
        if re.fullmatch(r"\d+\.0+", word):  # "2.0" == "2"
            word = word.split(".")[0]
        words.append(word)
    return " ".join(words)


def infer_question_type(answer: str) -> str:
    """Closed-type rule for sources without an answer type: the reference answer is yes or no."""
    return "closed" if _basic_normalize(answer) in YES_NO else "open"


Reference = str | Sequence[str] | None  # one reference as written, or the accepted forms a task expands


def _forms(reference: Reference) -> list[str]:
    if reference is None:
        return []
    return [reference] if isinstance(reference, str) else [str(form) for form in reference]


def reference_alternatives(reference: Reference) -> list[str]:
    """All accepted forms of a reference answer, normalised.

    A string is one answer taken as written; a benchmark whose references encode several answers (VQA-Med's
    ``#`` alternatives and optional ``( … )`` parts) expands them first, in its task module
    (:func:`rarl.tasks.reference_forms`), and passes the list of forms.
    """
    forms: list[str] = []
    for form in _forms(reference):
        norm = normalize_answer(form)
        if norm and norm not in forms:
            forms.append(norm)
    return forms or [""]


def reference_texts(reference: Reference) -> list[str]:
    """The accepted forms of a reference as natural text (not normalised), for BERTScore: case, articles and
    punctuation kept so that the embedding model sees ordinary text."""
    forms: list[str] = []
    for form in _forms(reference):
        text = " ".join(form.split())
        if text and text not in forms:
            forms.append(text)
    return forms or [" ".join(_forms(reference)) or ""]


def yes_no(text: str | None) -> str | None:
    """``"yes"``/``"no"`` when the text's whole words say one of them unambiguously, else ``None``.

    Whole words only: "nodule" contains no "no". Both polarities present ("yes, there is no mass") is
    ambiguous and returns ``None``, and so is a negated yes/no word ("not true", "isn't correct", "never
    yes"): reading "not true" as "true" would score the opposite of what was said, and reading it as "no"
    would guess. "No" as a determiner ("no evidence of a mass", "no fracture") is an unnegated "no".
    """
    has_yes = has_no = False
    for clause in _CLAUSE_BREAK.split(_NOT_CONTRACTION.sub(" not", str(text or ""))):
        negated = False
        for word in normalize_answer(clause).split():
            if word in NEGATORS:
                negated = True
            elif word in YES_WORDS or word in NO_WORDS:
                if negated:
                    return None
                has_yes, has_no = has_yes or word in YES_WORDS, has_no or word in NO_WORDS
    if has_yes == has_no:
        return None
    return "yes" if has_yes else "no"


# --------------------------------------------------------------------------------------------------
# multiple choice


def choice_index(text: str | None, choices: Sequence[str] | None = None) -> int | None:
    """The 0-based option a text selects: "(B)", "B.", "B", "b)", or the option's own text.

    A letter beyond the number of choices is rejected (``None``). The option text is tried first, so an
    option such as "A cat" is not misread as the letter A. A text that names a second option after the
    leading letter ("(A) is wrong, it is (B)", "(A) or (B)", "(A) 4" when 4 is option B's text) selects
    nothing: which one it means is a guess, and the first one named is not necessarily the answer.
    """
    if not text:
        return None
    options = [normalize_answer(_OPTION_PREFIX.sub("", str(c))) for c in choices] if choices else []
    norm = normalize_answer(text) if not _OPTION_PREFIX.match(str(text)) else ""  # "(A) 4" is not "4"
    if norm and norm in options:
        return options.index(norm)
    match = _CHOICE_LETTER.match(str(text))
    if not match:
        return None
    letter = next(g for g in match.groups() if g)
    index = ord(letter.upper()) - ord("A")
    if choices is not None and index >= len(choices):
        return None
    if _names_another_option(str(text)[match.end() :], index, len(choices) if choices else 26, options):
        return None
    return index


def _names_another_option(rest: str, index: int, count: int, options: list[str]) -> bool:
    """Whether the text after a leading option letter names an option other than ``index``: by letter
    (within the ``count`` options) or by another option's whole text (after removing the chosen one's)."""
    for found in _OTHER_LETTER.finditer(rest):
        letter = found.group(1) or found.group(2)
        if found.group(2) and _WORD_LETTER.match(rest, found.start()):
            continue
        other = ord(letter.upper()) - ord("A")
        if other != index and other < count:
            return True
    if not options:
        return False
    words = f" {normalize_answer(rest)} "
    own = f" {options[index]} " if options[index] else None
    without_own = words.replace(own, " ") if own else words
    for i, option in enumerate(options):
        other = f" {option} "
        if option and i != index and other in (without_own if own and other in own else words):
            return True
    return False


# --------------------------------------------------------------------------------------------------
# matching and rule metrics


def exact_match(pred: str | None, ref: Reference) -> bool:
    """Normalised equality with any accepted form of the reference."""
    norm = normalize_answer(pred)
    return bool(norm) and norm in reference_alternatives(ref)


def answers_match(
    pred: str | None, ref: Reference, question_type: str, choices: Sequence[str] | None = None
) -> bool:
    """Whether a predicted (already extracted) answer is correct for a closed or choice question.

    * choice: both sides resolve to the same option (letters validated against ``choices``);
    * closed with a yes/no reference: the prediction's unambiguous yes/no (synonyms, whole words);
    * otherwise (closed non-yes/no such as "CT or MRI?", or open): exact match after normalisation.
    """
    forms = [form for form in _forms(ref) if form]
    if not pred or not forms:
        return False
    if question_type == "choice":
        ref_index = choice_index(forms[0], choices)
        if ref_index is not None:
            return choice_index(pred, choices) == ref_index
        if choice_index(forms[0]) is not None:  # a letter beyond the options: bad reference, nothing matches
            return False
        return exact_match(pred, forms)
    if question_type == "closed" and len(forms) == 1:
        ref_polarity = yes_no(forms[0]) if normalize_answer(forms[0]) in YES_WORDS | NO_WORDS else None
        if ref_polarity is not None:
            return yes_no(pred) == ref_polarity
    return exact_match(pred, forms)


def _f1_recall(pred: str | None, ref: str) -> tuple[float, float]:
    pred_tokens = normalize_answer(pred).split()
    ref_tokens = ref.split()
    if not pred_tokens or not ref_tokens:
        return 0.0, 0.0
    common = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0, 0.0
    precision, recall = common / len(pred_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall), recall


def token_f1(pred: str | None, ref: Reference) -> float:
    """SQuAD-style token F1 on normalised words (best over the reference's accepted forms)."""
    return max(_f1_recall(pred, alt)[0] for alt in reference_alternatives(ref))


def token_recall(pred: str | None, ref: Reference) -> float:
    """Share of the reference's words that the prediction contains (best over accepted forms)."""
    return max(_f1_recall(pred, alt)[1] for alt in reference_alternatives(ref))


__all__ = [
    "answers_match",
    "choice_index",
    "completion_text",
    "exact_match",
    "extract_answer",
    "extract_think",
    "infer_question_type",
    "normalize_answer",
    "reference_alternatives",
    "reference_texts",
    "token_f1",
    "token_recall",
    "yes_no",
]
