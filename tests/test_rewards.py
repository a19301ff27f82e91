"""The four GRPO rewards on hand-written completions, called the way TRL's GRPOTrainer calls them."""

from __future__ import annotations

import pickle
from collections import defaultdict

import pytest
from trl.trainer.utils import get_callable_name

from rarl import rewards
from rarl.config import RewardConfig
from rarl.errors import UserError
from rarl.rewards import (
    accuracy_reward,
    build_reward_functions,
    format_reward,
    length_reward,
    reasoning_reward,
)

MALFORMED = [None, "", "   ", [], {}, [{"role": "assistant"}], [{"role": "assistant", "content": None}], 42]


def trl_kwargs(n: int, **columns):
    """The extra keyword arguments GRPOTrainer passes besides completions (see _calculate_rewards)."""
    metrics: dict[str, list[float]] = defaultdict(list)
    extra: dict[str, list] = defaultdict(list)
    kwargs = {
        "prompts": [[{"role": "user", "content": "q"}]] * n,
        "completion_ids": [[1, 2, 3]] * n,
        "trainer_state": object(),
        "log_extra": lambda column, values: extra[column].extend(values),
        "log_metric": lambda name, value: metrics[name].append(value),
        "image": [None] * n,
        "dataset": ["synthetic"] * n,
        "id": [str(i) for i in range(n)],
        **columns,
    }
    return kwargs, metrics, extra


# --------------------------------------------------------------------------------------------------
# format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>look at the left lung</think><answer>yes</answer>", 1.0),
        ("  <think>a\nb</think>\n\n<answer>left lung</answer>\n", 1.0),  # whitespace between/around
        ("<think></think><answer></answer>", 1.0),  # the shape, as in the paper's regex
        ("Sure! <think>a</think><answer>b</answer>", 0.1),  # text before
        ("<think>a</think><answer>b</answer> done", 0.1),  # text after
        ("<think>a</think> yes", 0.1),  # answer tags missing
        ("<answer>yes</answer>", 0.1),
        ("<answer>b</answer><think>a</think>", 0.1),  # wrong order
        ("<think>a</think><answer>b</answer><answer>c</answer>", 0.1),  # a second answer
        ("<think>a <answer>b</answer>", 0.1),  # unclosed think
        ("The answer is yes.", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward_rules(text: str, expected: float) -> None:
    assert format_reward([text]) == [expected]


def test_format_reward_reads_chat_messages_and_logs_strict_rate() -> None:
    completions = [
        [{"role": "assistant", "content": "<think>a</think><answer>b</answer>"}],
        [{"role": "assistant", "content": "b"}],
    ]
    kwargs, metrics, _ = trl_kwargs(2)
    assert format_reward(completions, **kwargs) == [1.0, 0.0]
    assert metrics["format/strict_rate"] == [0.5]


# --------------------------------------------------------------------------------------------------
# length


def test_length_reward_counts_completion_ids_and_caps_at_one() -> None:
    texts = ["x", "x", "x", "x"]  # text is ignored when TRL passes token ids
    ids = [list(range(n)) for n in (0, 250, 1000, 4000)]
    assert length_reward(texts, completion_ids=ids) == pytest.approx([0.0, 0.25, 1.0, 1.0])


def test_length_reward_without_ids_counts_words() -> None:
    assert length_reward(["one two three", ""]) == pytest.approx([0.003, 0.0])


# --------------------------------------------------------------------------------------------------
# accuracy


def test_closed_answers_yes_no_variants_and_whole_words(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_bertscore(*args, **kwargs):
        raise AssertionError("BERTScore must never run for closed or choice questions")

    monkeypatch.setattr(rewards, "get_scorer", no_bertscore)
    completions = [
        "<think>clear</think><answer>Yes.</answer>",
        "<think>clear</think><answer>yeah</answer>",
        "<think>a lesion</think><answer>nodule</answer>",  # "no" inside "nodule" is not "no"
        "<think>nothing</think><answer>No, there is no fracture</answer>",
        "<think>x</think><answer>(B)</answer>",
        "<think>x</think><answer>(E)</answer>",  # beyond the four options
    ]
    kwargs, metrics, extra = trl_kwargs(
        6,
        answer=["yes", "yes", "no", "no", "(B)", "(B)"],
        question_type=["closed", "closed", "closed", "closed", "choice", "choice"],
        choices=[None, None, None, None, ["3", "4", "5", "6"], ["3", "4", "5", "6"]],
    )
    assert accuracy_reward(completions, **kwargs) == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert metrics["accuracy/closed"] == [0.75]
    assert metrics["accuracy/choice"] == [0.5]
    assert "accuracy/open" not in metrics  # nothing open in this batch: no NaN metric
    assert extra["extracted_answer"][2] == "nodule"


def test_open_answers_are_ordered_by_similarity() -> None:
    ref = "mass in the left lower lobe"
    completions = [
        "<think>x</think><answer>Mass in the left lower lobe.</answer>",  # exact after normalisation
        "<think>x</think><answer>a mass in the left lung</answer>",
        "<think>x</think><answer>left kidney</answer>",
        "<think>x</think><answer>the heart is normal in size</answer>",
    ]
    kwargs, metrics, _ = trl_kwargs(4, answer=[ref] * 4, question_type=["open"] * 4, choices=[None] * 4)
    scores = accuracy_reward(completions, **kwargs)
    assert scores[0] == 1.0
    assert scores[0] > scores[1] > scores[2] > scores[3] > 0.0
    assert metrics["accuracy/open"] == [pytest.approx(sum(scores) / 4)]


def test_open_answer_uses_the_best_vqa_med_alternative() -> None:
    scores = accuracy_reward(
        ["<answer>magnetic resonance imaging</answer>", "<answer>magnetic resonance imaging</answer>"],
        answer=["ultrasound#magnetic resonance imaging (mri)", "ultrasound"],
        question_type=["open", "open"],
        benchmark=["vqa_med_2019", "vqa_med_2019"],
    )
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert scores[0] > scores[1]


def test_vqa_med_reference_rules_apply_to_vqa_med_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21: '( … )' optional parts are VQA-Med's rule; a PathVQA answer's parentheses are text. The
    reward and the eval rarl.* metric share the rule (rarl.tasks.reference_forms)."""
    monkeypatch.setattr(rewards, "get_scorer", lambda *a, **k: _Constant(0.5))
    pred = ["<answer>early ischemic injury</answer>"] * 3
    ref = ["early (reversible) ischemic injury"] * 3
    scores = accuracy_reward(
        pred,
        answer=ref,
        question_type=["open"] * 3,
        benchmark=["vqa_med_2019", "pathvqa", None],
        dataset=["a", "b", "vqa_med_2019"],  # predictions without a benchmark: the dataset label
    )
    assert scores == [1.0, 0.5, 1.0]  # exact under VQA-Med's rule; BERTScore (stubbed) for PathVQA


class _Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def f1(self, candidates, references):
        return [self.value] * len(candidates)


def test_missing_question_type_is_inferred_from_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rewards, "get_scorer", lambda *a, **k: pytest.fail("yes/no answer is closed"))
    assert accuracy_reward(["<answer>no</answer>", "<answer>yes</answer>"], answer=["no", "no"]) == [1.0, 0.0]


def test_accuracy_without_answer_column_is_a_user_error() -> None:
    with pytest.raises(UserError, match="'answer'"):
        accuracy_reward(["<answer>yes</answer>"])


# --------------------------------------------------------------------------------------------------
# reasoning


def test_reasoning_is_none_for_unannotated_samples_and_ordered_otherwise() -> None:
    ref = "There is a round opacity in the left lower lobe, consistent with a mass."
    completions = [
        f"<think>{ref}</think><answer>yes</answer>",
        "<think>A round opacity is seen in the left lower lung lobe.</think><answer>yes</answer>",
        "<think>The abdomen shows normal bowel gas.</think><answer>yes</answer>",
        "<answer>yes</answer>",  # no reasoning given although it is annotated
        "<think>anything</think><answer>yes</answer>",  # unannotated sample
        "<think>anything</think><answer>yes</answer>",  # empty reference counts as unannotated
    ]
    kwargs, metrics, _ = trl_kwargs(6, reasoning=[ref, ref, ref, ref, None, "  "])
    scores = reasoning_reward(completions, **kwargs)
    assert scores[4] is None and scores[5] is None
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert scores[0] > scores[1] > scores[2] > 0.0
    assert scores[3] == 0.0
    assert metrics["reasoning/annotated_share"] == [pytest.approx(4 / 6)]


def test_reasoning_without_the_column_skips_every_sample() -> None:
    assert reasoning_reward(["<think>a</think><answer>b</answer>"] * 2) == [None, None]


# --------------------------------------------------------------------------------------------------
# malformed input and the registry


def test_malformed_and_empty_completions_score_zero_without_raising() -> None:
    n = len(MALFORMED)
    kwargs, _, _ = trl_kwargs(n, answer=["left lung"] * n, question_type=["open"] * n, reasoning=["why"] * n)
    kwargs["completion_ids"] = [[]] * n
    assert format_reward(MALFORMED, **kwargs) == [0.0] * n
    assert length_reward(MALFORMED, **kwargs) == [0.0] * n
    assert accuracy_reward(MALFORMED, **kwargs) == [0.0] * n
    assert reasoning_reward(MALFORMED, **kwargs) == [0.0] * n


def test_registry_builds_named_functions_with_config_weights() -> None:
    config = RewardConfig(names=["accuracy", "format", "reasoning"], weights=[2.0, 0.5, 1.0])
    funcs, weights = build_reward_functions(config)
    assert [get_callable_name(f) for f in funcs] == ["accuracy_reward", "format_reward", "reasoning_reward"]
    assert weights == [2.0, 0.5, 1.0]
    assert funcs[0].keywords["bertscore_model"] == config.bertscore_model
    restored = pickle.loads(pickle.dumps(funcs[0]))  # TRL/accelerate may pickle reward functions
    assert restored(["<answer>yes</answer>"], answer=["yes"], question_type=["closed"]) == [1.0]


def test_trl_logs_the_function_names() -> None:
    from trl.trainer.utils import get_callable_name

    funcs, _ = build_reward_functions(RewardConfig())
    assert [get_callable_name(f) for f in funcs] == [
        "format_reward",
        "length_reward",
        "accuracy_reward",
        "reasoning_reward",
    ]


@pytest.mark.parametrize(
    ("names", "weights", "message"),
    [
        (["format", "style"], [1.0, 1.0], "unknown reward 'style'"),
        (["format"], [1.0, 2.0], "weights has 2 entries"),
        (["format", "format"], [1.0, 1.0], "twice"),
    ],
)
def test_registry_rejects_bad_config(names: list[str], weights: list[float], message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_reward_functions(RewardConfig(names=names, weights=weights))
