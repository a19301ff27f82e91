"""Each reference is embedded once per reward call, however many completions of its group share it.

Why: GRPO scores G completions per prompt against the same reference answer and reasoning. rarl scores a
whole TRL generation batch in one ``BERTScorer.score`` call, and bert_score de-duplicates the sentences of
one call before encoding them; these tests pin that by counting the rows the BERTScore encoder actually
sees (a forward hook decoding its inputs), so a change in either would show up here.
"""

from __future__ import annotations

from collections import Counter

import pytest

from rarl import bertscore, rewards
from rarl.bench.rewards import make_batch
from rarl.compat import bertscorer_parts

GROUP = 8


@pytest.fixture()
def encoded_rows():
    """The texts the BERTScore encoder embeds, one entry per encoded row."""
    scorer = bertscore.get_scorer(bertscore.PACKAGED_MINILM, device="cpu")
    model, tokenizer = bertscorer_parts(scorer.scorer)  # no public accessor: rarl.compat holds the touch
    rows: list[str] = []

    def hook(module, args, kwargs, output):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        rows.extend(tokenizer.batch_decode(input_ids, skip_special_tokens=True))

    handle = model.register_forward_hook(hook, with_kwargs=True)
    yield rows
    handle.remove()


def _norm(text: str) -> str:
    return " ".join(text.lower().replace(" .", ".").split())


@pytest.mark.parametrize("reward", ["reasoning", "accuracy"])
def test_each_reference_is_encoded_once_per_call(encoded_rows, reward) -> None:
    batch = make_batch(3 * GROUP, seed=11, group_size=GROUP)  # three prompts, G completions each
    column = "reasoning" if reward == "reasoning" else "answer"
    references = {_norm(text) for text in batch[column]}
    assert len(references) == 3
    columns = {k: v for k, v in batch.items() if k != "completions"}
    scores = rewards.REWARD_FUNCTIONS[reward](batch["completions"], **columns)
    assert len(scores) == 3 * GROUP
    seen = Counter(_norm(row) for row in encoded_rows)
    encoded_refs = {ref: seen[ref] for ref in references if seen[ref]}
    assert encoded_refs, "no reference reached the encoder"
    assert all(count == 1 for count in encoded_refs.values()), encoded_refs
    assert all(count == 1 for count in seen.values()), "a text was embedded twice in one call"
    if reward == "reasoning":  # every completion's <think> is distinct, so rows = completions + prompts
        assert len(encoded_rows) == 3 * GROUP + 3
