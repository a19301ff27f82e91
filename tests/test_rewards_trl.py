"""The rewards inside a real ``trl.GRPOTrainer`` step on the tiny Qwen2-VL (CPU, offline).

Proves what the unit tests cannot: TRL accepts the functions' signature and return values (``None`` for
unannotated samples included), logs each component under its name, and receives the extra diagnostics.
"""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow
def test_one_grpo_step_logs_every_reward_component(tiny_model_config, tmp_path) -> None:
    from datasets import Dataset
    from PIL import Image
    from trl import GRPOConfig, GRPOTrainer

    from rarl.config import RewardConfig
    from rarl.models import load_model, load_processor
    from rarl.rewards import build_reward_functions

    def row(question: str, answer: str, qtype: str, reasoning: str | None) -> dict:
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        image = Image.new("RGB", (56, 56), (120, 40, 200))
        columns = {"answer": answer, "question_type": qtype, "reasoning": reasoning}
        return {"prompt": prompt, "image": image, **columns}

    rows = [
        row("Is there a mass?", "yes", "closed", "A round opacity is visible in the left lung."),
        row("Where is the lesion?", "left lung", "open", None),  # unannotated: reasoning reward None
    ]
    dataset = Dataset.from_list(rows)  # one generation round = both prompts × 4 completions

    funcs, weights = build_reward_functions(RewardConfig(), device="cpu")
    args = GRPOConfig(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=1,
        logging_steps=1,
        learning_rate=1e-4,
        reward_weights=weights,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        remove_unused_columns=False,
        num_completions_to_print=0,
    )
    model = load_model(tiny_model_config, device="cpu")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=load_processor(tiny_model_config),
    )
    trainer.train()

    logs = {key: value for entry in trainer.state.log_history for key, value in entry.items()}
    for name in ("format_reward", "length_reward", "accuracy_reward", "reasoning_reward"):
        assert f"rewards/{name}/mean" in logs, sorted(logs)
    # 8 tokens at most: the length reward is exactly tokens/1000, so between 0.001 and 0.008.
    assert 0.0 < logs["rewards/length_reward/mean"] <= 0.008 + 1e-9
    assert 0.0 <= logs["rewards/accuracy_reward/mean"] <= 1.0
    # Only the annotated half is scored; a random model writes no <think>: reasoning 0 (not NaN).
    assert logs["rewards/reasoning_reward/mean"] == pytest.approx(0.0)
    assert logs["reasoning/annotated_share"] == pytest.approx(0.5)
    assert "accuracy/closed" in logs and "accuracy/open" in logs
    assert not math.isnan(logs["format/strict_rate"])
