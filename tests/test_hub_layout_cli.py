"""Every rarl command on Qwen2-VL-2B-Instruct's hub layout (real tokenizer and processor, small random model).

The real checkpoint's preprocessor_config.json carries its own pixel budget and the real tokenizer merges
``<think>``/``<answer>`` tags with their neighbours: both are what the tiny model hides.
"""

from __future__ import annotations

import json

import pytest
import yaml
from PIL import Image
from pydicom.data import get_testdata_file

from rarl.cli import main
from tests.conftest import REALDATA

BUDGET = 64 * 28 * 28  # small images keep the 151,936-wide logits cheap on CPU


@pytest.fixture
def budgets(monkeypatch) -> list[tuple[int, int]]:
    """The (min, max) pixel budget of every processor a command loads (through rarl.models.load_processor)."""
    import rarl.models

    seen: list[tuple[int, int]] = []
    original = rarl.models.load_processor

    def recording(*args, **kwargs):
        processor = original(*args, **kwargs)
        size = processor.image_processor.size
        seen.append((size["shortest_edge"], size["longest_edge"]))
        return processor

    monkeypatch.setattr(rarl.models, "load_processor", recording)
    return seen


def _config(tmp_path, model_dir, **sections) -> str:
    data = {"model": {"name_or_path": str(model_dir), "dtype": "float32", "max_pixels": BUDGET}, **sections}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_ask_png_and_dicom(tmp_path, hub_model_dir, capsys, budgets):
    png = tmp_path / "scan.png"
    Image.new("L", (300, 240), color=40).save(png)
    for image in (str(png), get_testdata_file("MR_small.dcm")):
        args = ["ask", "--model", str(hub_model_dir), "--image", image, "--max-new-tokens", "6"]
        args += ["--dtype", "float32", "--device", "cpu", "--max-pixels", str(BUDGET), "--json"]
        assert main([*args, "--", "Is the lung healthy?"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert set(result) >= {"raw_output", "pred_answer", "pred_reasoning"}
    assert budgets == [(3136, BUDGET)] * 2  # --max-pixels, not the file's 12,845,056


def test_data_audit_counts_with_the_real_tokenizer(tmp_path, hub_model_dir):
    config = _config(
        tmp_path, hub_model_dir, data={"train": [{"source": "synthetic", "split": "train", "num_samples": 8}]}
    )
    out = tmp_path / "audit.json"
    assert main(["data", "audit", config, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["token_counter"] == "tokenizer" and report["max_pixels"] == BUDGET


def test_eval_on_eight_real_vqa_rad_items(tmp_path, hub_model_dir, budgets):
    if not (REALDATA / "vqa_rad").exists():
        pytest.skip("realdata/vqa_rad not present")
    spec = {"source": "vqa_rad", "path": str(REALDATA / "vqa_rad"), "split": "test", "limit": 8}
    config = _config(
        tmp_path,
        hub_model_dir,
        data={"eval": [spec]},
        eval={"output_dir": str(tmp_path / "eval"), "batch_size": 4, "max_new_tokens": 6},
    )
    assert main(["eval", "--config", config, "--no-judges"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8
    assert budgets and set(budgets) == {(3136, BUDGET)}


def test_train_three_grpo_lora_steps_saves_the_budget_with_the_adapter(tmp_path, hub_model_dir, budgets):
    out = tmp_path / "grpo"
    config = _config(
        tmp_path,
        hub_model_dir,
        data={"train": [{"source": "synthetic", "split": "train", "num_samples": 8, "seed": 1}]},
        lora={"enabled": True},
        train={
            "method": "grpo",
            "grpo": {
                "output_dir": str(out),
                "max_steps": 3,
                "per_device_train_batch_size": 2,
                "num_generations": 2,
                "max_completion_length": 8,
                "save_steps": 3,
                "report_to": [],
            },
        },
    )
    assert main(["train", "--config", config]) == 0
    assert (out / "adapter_model.safetensors").is_file()
    saved = json.loads((out / "processor_config.json").read_text())["image_processor"]["size"]
    assert saved["longest_edge"] == BUDGET  # not the checkpoint file's 12,845,056
    assert budgets and set(budgets) == {(3136, BUDGET)}


# --------------------------------------------------------------------------------------------------
# rewards and stopping on real tokens


def test_format_and_length_rewards_on_real_tokens(hub_model_dir):
    from transformers import AutoTokenizer

    from rarl.answers import extract_answer, extract_think
    from rarl.rewards import format_reward, length_reward

    tokenizer = AutoTokenizer.from_pretrained(hub_model_dir)
    text = "<think>The left lung shows an opacity.</think><answer>yes</answer>"
    ids = tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == 151645 and 151645 not in ids[:-1]
    decoded = tokenizer.decode(ids, skip_special_tokens=True)  # what TRL hands the rewards
    assert decoded == text
    assert extract_think(decoded) == "The left lung shows an opacity." and extract_answer(decoded) == "yes"
    assert format_reward([decoded]) == [1.0]
    assert length_reward([decoded], completion_ids=[ids]) == [pytest.approx(0.001 * len(ids))]
    assert len(ids) != len(decoded.split())  # real token count, not words


def test_generation_stops_at_im_end(hub_model_dir):
    """The hub's generation_config stops at <|im_end|> (151645): a model forced to emit it stops there."""
    import torch
    from transformers import AutoModelForImageTextToText, LogitsProcessor, LogitsProcessorList

    class ForceAfter(LogitsProcessor):
        def __init__(self, start: int) -> None:
            self.start = start

        def __call__(self, input_ids, scores):
            if input_ids.shape[1] >= self.start + 3:
                scores[:, :] = -float("inf")
                scores[:, 151645] = 0.0
            return scores

    model = AutoModelForImageTextToText.from_pretrained(hub_model_dir, dtype=torch.float32)
    assert 151645 in model.generation_config.eos_token_id
    prompt = torch.tensor([[151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198]])
    out = model.generate(
        prompt, max_new_tokens=20, do_sample=False, logits_processor=LogitsProcessorList([ForceAfter(9)])
    )
    new = out[0, prompt.shape[1] :].tolist()
    assert new[-1] == 151645 and len(new) == 4
