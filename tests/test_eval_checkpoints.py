"""`rarl eval --checkpoints all|last|best` over a real LoRA run's checkpoints on the tiny model."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from rarl.cli import main
from rarl.io import read_jsonl


def write_config(path, model_dir, run_dir, eval_dir, split="validation"):
    config = {
        "model": {"name_or_path": str(model_dir), "dtype": "float32", "max_pixels": 112 * 112},
        "data": {
            "train": [{"source": "synthetic", "num_samples": 6, "seed": 5}],
            "eval": [{"source": "synthetic", "split": split, "num_samples": 5, "seed": 9}],
        },
        "train": {
            "method": "sft",
            "sft": {
                "output_dir": str(run_dir),
                "max_steps": 3,
                "save_steps": 1,
                "learning_rate": 5e-2,
                "per_device_train_batch_size": 2,
                "report_to": [],
            },
        },
        "eval": {"output_dir": str(eval_dir), "batch_size": 5, "max_new_tokens": 4, "bertscore": False},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """Three SFT+LoRA steps with a checkpoint after each."""
    root = tmp_path_factory.mktemp("ckpt_run")
    config = write_config(root / "c.yaml", tiny_model_dir, root / "run", root / "unused")
    assert main(["train", "--config", str(config)]) == 0
    assert sorted(p.name for p in (root / "run").glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-3",
    ]
    return root / "run"


def test_best_is_chosen_on_validation_from_the_predictions(lora_run, tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, lora_run, tmp_path / "sel")
    assert main(["eval", "--config", str(config), "--checkpoints", "all", "--no-judges"]) == 0
    sel = tmp_path / "sel"
    for step in (1, 2, 3):
        rows = list(read_jsonl(sel / f"checkpoint-{step}" / "predictions.jsonl"))
        assert len(rows) == 5 and all(r["model"].endswith(f"+{lora_run}/checkpoint-{step}") for r in rows)
        assert f"checkpoint-{step}" in (sel / f"checkpoint-{step}" / "results.md").read_text()
    summary = json.loads((sel / "results.json").read_text())["checkpoint_selection"]
    assert summary["mode"] == "all" and summary["chosen"] is None
    # Make checkpoint-2's answers all correct, as a model at its peak would answer; every prediction
    # keeps its item fingerprint, so the rerun resumes them and re-scores from the file.
    path = sel / "checkpoint-2" / "predictions.jsonl"
    rows = list(read_jsonl(path))
    for row in rows:
        row["raw_output"] = f"<answer>{row['reference_answer']}</answer>"
        row["pred_answer"] = row["reference_answer"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["eval", "--config", str(config), "--checkpoints", "best", "--no-judges"]) == 0
    assert "checkpoint-2: rarl.accuracy 1.0000 (n=5)  <- chosen" in capsys.readouterr().out
    results = json.loads((sel / "results.json").read_text())
    summary = results["checkpoint_selection"]
    assert summary["chosen"] == "checkpoint-2" and summary["metric"] == "rarl.accuracy"
    assert results["model"].endswith("checkpoint-2") and results["generation"]["generated"] == 0
    assert [row["step"] for row in summary["checkpoints"]] == [1, 2, 3]
    with (sel / "checkpoints.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [row["checkpoint"] for row in table] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert float(table[1]["rarl.accuracy"]) == 1.0
    for row, checkpoint in zip(table, summary["checkpoints"], strict=True):
        # independent count: exact string equality is a (strict) lower bound of the rule match
        preds = list(read_jsonl(sel / row["checkpoint"] / "predictions.jsonl"))
        exact = sum(p["pred_answer"] == p["reference_answer"] for p in preds)
        assert float(row["rarl.accuracy"]) >= exact / 5
        assert float(row["rarl.accuracy"]) == checkpoint["value"] and int(row["n"]) == 5
    assert (sel / "checkpoints.png").read_bytes()[:4] == b"\x89PNG"


def test_best_on_a_test_split_is_refused(lora_run, tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, lora_run, tmp_path / "sel", split="test")
    assert main(["eval", "--config", str(config), "--checkpoints", "best", "--no-judges"]) == 2
    err = capsys.readouterr().err
    assert "data.eval.0.split is 'test'" in err and "validation" in err
    assert not (tmp_path / "sel").exists()


def test_last_evaluates_only_the_newest_checkpoint(lora_run, tiny_model_dir, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "ignored", tmp_path / "sel")
    args = ["eval", "--config", str(config), "--checkpoints", "last", "--run", str(lora_run), "--no-judges"]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "sel").glob("checkpoint-*")) == ["checkpoint-3"]
    assert (tmp_path / "sel" / "resolved_config.yaml").is_file()
    assert (tmp_path / "sel" / "checkpoint-3" / "provenance.json").is_file()
    assert json.loads((tmp_path / "sel" / "results.json").read_text())["checkpoint_selection"]["chosen"] == (
        "checkpoint-3"
    )


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "adapter_config.json"])
def test_a_truncated_adapter_in_the_newest_checkpoint_falls_back(
    lora_run, tiny_model_dir, tmp_path, capsys, monkeypatch, name
):
    """``last`` evaluates the newest checkpoint that loads; a half-written one is named and skipped."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(lora_run, run)
    path = run / "checkpoint-3" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (run / "checkpoint-2" / "optimizer.pt").write_bytes(b"")  # not needed to evaluate: no reason to skip
    monkeypatch.setenv("COLUMNS", "500")
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, run, tmp_path / "sel")
    assert main(["eval", "--config", str(config), "--checkpoints", "last", "--no-judges"]) == 0
    assert f"checkpoint-3 is incomplete ({name} is" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "sel").glob("checkpoint-*")) == ["checkpoint-2"]
    results = json.loads((tmp_path / "sel" / "results.json").read_text())
    assert results["checkpoint_selection"]["chosen"] == "checkpoint-2" and results["n"] == 5
