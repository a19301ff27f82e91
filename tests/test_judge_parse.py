"""Judge reply parsing, the prompt and the cache key."""

from __future__ import annotations

import pytest

from rarl.eval.judge import PROMPT_VERSION, JudgeParseError, cache_key, judge_messages, parse_judge_reply


@pytest.mark.parametrize(
    ("reply", "scores", "how"),
    [
        ('{"evaluation": "fine", "reasoning_score": 1, "prediction_score": 0}', (1, 0), "json"),
        ('```json\n{"evaluation": "x", "reasoning_score": 0, "prediction_score": 1}\n```', (0, 1), "fenced"),
        ('```\n{"reasoning_score": "1", "prediction_score": 1.0, "evaluation": "ok"}\n```', (1, 1), "fenced"),
        (
            'Sure! {"evaluation": "a {nested} brace", "reasoning_score": 1, "prediction_score": 1} Done.',
            (1, 1),
            "embedded",
        ),
        ('{"Reasoning_Score": true, "PREDICTION_SCORE": false}', (1, 0), "json"),
        ("Evaluation: plausible.\nReasoning score: 1\nPrediction score: 0", (1, 0), "regex"),
        ("**reasoning_score** = 0, **prediction_score** = 1", (0, 1), "regex"),
        ("The prediction score is 1 and the reasoning score is 1.", (1, 1), "regex"),
    ],
)
def test_parses_json_fences_embedded_and_prose(reply, scores, how):
    verdict = parse_judge_reply(reply)
    assert (verdict.reasoning_score, verdict.prediction_score) == scores
    assert verdict.parsed_by == how


@pytest.mark.parametrize(
    "reply",
    [
        "",
        None,
        "I cannot evaluate this.",
        '{"evaluation": "missing scores"}',
        '{"evaluation": "x", "reasoning_score": 5, "prediction_score": 1}',
        '{"evaluation": "x", "reasoning_score": "high", "prediction_score": 1}',
        "reasoning score: 1 only",
        "[1, 0]",
    ],
)
def test_unreadable_replies_raise(reply):
    with pytest.raises(JudgeParseError):
        parse_judge_reply(reply)


def test_prompt_holds_inputs_and_asks_for_the_paper_json():
    messages = judge_messages(
        "Is the liver enlarged?", "yes", "<think>span 18 cm</think><answer>yes</answer>"
    )
    user = messages[-1]["content"]
    assert messages[0]["role"] == "system"
    for text in (
        "Is the liver enlarged?",
        "Ground-truth answer: yes",
        "span 18 cm",
        '"evaluation"',
        '"reasoning_score"',
        '"prediction_score"',
    ):
        assert text in user


def test_cache_key_depends_on_every_part():
    base = cache_key("gpt-4o-mini", "q", "ref", "pred")
    assert base == cache_key("gpt-4o-mini", "q", "ref", "pred")
    others = {
        cache_key("gemini-1.5-flash", "q", "ref", "pred"),
        cache_key("gpt-4o-mini", "q2", "ref", "pred"),
        cache_key("gpt-4o-mini", "q", "ref2", "pred"),
        cache_key("gpt-4o-mini", "q", "ref", "pred2"),
    }
    assert base not in others and len(others) == 4
    assert PROMPT_VERSION
