"""`rarl bench rewards` end to end on a small batch (the 256-completion number is measured by hand)."""

from __future__ import annotations

import json

import pytest

from rarl.bench.rewards import make_batch
from rarl.cli import main


def test_batch_is_grpo_shaped_and_distinct() -> None:
    batch = make_batch(16, seed=3, group_size=8)
    assert len({str(c) for c in batch["completions"]}) == 16  # no duplicate for BERTScore to skip
    assert len(set(batch["answer"][:8])) == 1 and len(set(batch["reasoning"][8:])) == 1
    assert batch["question_type"] == ["open"] * 16
    assert make_batch(16, seed=3, group_size=8) == batch  # seeded


@pytest.mark.slow
def test_bench_rewards_writes_json_and_markdown(tmp_path, capsys) -> None:
    out = tmp_path / "bench" / "rewards.json"
    code = main(["bench", "rewards", "--num-completions", "16", "--repeats", "1", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["num_completions"] == 16 and result["device"] == "cpu"
    assert set(result["per_reward"]) == {
        "format_reward",
        "length_reward",
        "accuracy_reward",
        "reasoning_reward",
    }
    assert result["completions_per_s"] > 0
    assert 0.0 < result["per_reward"]["accuracy_reward"]["mean_reward"] <= 1.0
    markdown = out.with_suffix(".md").read_text()
    assert "completions/s" in markdown and markdown.count("\n") == 3
    assert "completions/s" in capsys.readouterr().out


def test_bench_rewards_rejects_bad_sizes(capsys) -> None:
    assert main(["bench", "rewards", "--group-size", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
