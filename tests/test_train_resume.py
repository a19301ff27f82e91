"""`rarl train --resume` continues the same run or refuses: settings, LoRA shape, checkpoints, metrics."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from rarl.cli import main
from rarl.io import read_jsonl


def write_config(path, model_dir, output_dir, max_steps: int, save_steps: int, **sft) -> None:
    config = {
        "model": {"name_or_path": str(model_dir), "dtype": "float32", "max_pixels": 112 * 112},
        "data": {"train": [{"source": "synthetic", "num_samples": 8, "seed": 5}]},
        "train": {
            "method": "sft",
            "sft": {
                "output_dir": str(output_dir),
                "max_steps": max_steps,
                "save_steps": save_steps,
                "learning_rate": 1e-2,
                "per_device_train_batch_size": 2,
                "report_to": [],
                **sft,
            },
        },
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """Three SFT steps, checkpoints at steps 2 and 3 (the trainer also saves the final step)."""
    root = tmp_path_factory.mktemp("resume")
    write_config(root / "train.yaml", tiny_model_dir, root / "run", max_steps=3, save_steps=2)
    assert main(["train", "--config", str(root / "train.yaml")]) == 0
    return root


@pytest.fixture
def run_copy(trained_run, tmp_path, tiny_model_dir):
    """A private copy of the trained run and its config (pointing at the copy)."""
    shutil.copytree(trained_run / "run", tmp_path / "run")
    config = tmp_path / "train.yaml"
    write_config(config, tiny_model_dir, tmp_path / "run", max_steps=3, save_steps=2)
    return config, tmp_path / "run"


def snapshot(run_dir):
    return {
        name: (run_dir / name).read_bytes()
        for name in ("resolved_config.yaml", "provenance.json", "metrics.jsonl")
    }


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.sft.learning_rate=0.5", "train.sft.learning_rate: 0.01 -> 0.5"),
        ("lora.r=4", "lora.r: 8 -> 4"),
        ("data.train.0.num_samples=9", "data.train.0.num_samples: 8 -> 9"),
    ],
)
def test_resume_with_changed_settings_is_refused_before_writing(run_copy, capsys, override, named):
    config, run_dir = run_copy
    before = snapshot(run_dir)
    assert main(["train", "--config", str(config), "train.sft.max_steps=4", override, "--resume"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("rarl train: error:")]
    assert named in line and "output_dir" in line and "Traceback" not in err
    assert snapshot(run_dir) == before
    assert not (run_dir / "checkpoint-4").exists()


def test_lora_shape_mismatch_without_a_provenance_record_is_one_line(run_copy, capsys):
    """Runs from before provenance (or --resume-from another run): the adapter itself is checked."""
    config, run_dir = run_copy
    (run_dir / "provenance.json").unlink()
    (run_dir / "resolved_config.yaml").unlink()
    assert main(["train", "--config", str(config), "train.sft.max_steps=4", "lora.r=4", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-3: its adapter was trained with other LoRA settings (lora.r: 8 -> 4)" in err
    assert "Traceback" not in err and "size mismatch" not in err


def test_incomplete_newest_checkpoint_falls_back_and_metrics_are_cut_back(run_copy, capsys, monkeypatch):
    config, run_dir = run_copy
    # A crash while saving checkpoint-3: weights written, trainer_state.json (written last) missing;
    # step 3 was already logged.
    assert (run_dir / "checkpoint-3" / "adapter_model.safetensors").is_file()
    (run_dir / "checkpoint-3" / "trainer_state.json").unlink()
    logged = [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl") if "loss" in row]
    assert logged == [1, 2, 3]
    monkeypatch.setenv("COLUMNS", "500")  # the log line unwrapped
    assert main(["train", "--config", str(config), "train.sft.max_steps=4", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resumed from" in captured.out and "checkpoint-2" in captured.out
    assert "checkpoint-3 is incomplete (no trainer_state.json); falling back" in captured.err
    state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    steps = [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl") if "loss" in row]
    assert steps == [1, 2, 3, 4]  # steps 3 and 4 of the resumed run, the old step 3 dropped


def test_ctrl_c_prints_how_to_resume(run_copy, capsys, monkeypatch):
    import rarl.train.run

    config, _ = run_copy

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rarl.train.run, "run_training", interrupted)
    assert main(["train", "--config", str(config), "--resume"]) == 130
    assert "rerun the same command with --resume" in capsys.readouterr().err


def test_a_fresh_start_drops_rows_of_an_attempt_that_saved_no_checkpoint(
    trained_run, tmp_path, tiny_model_dir
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(trained_run / "run" / "metrics.jsonl", run_dir)  # steps 1-3 of a crashed first attempt
    config = tmp_path / "train.yaml"
    write_config(config, tiny_model_dir, run_dir, max_steps=2, save_steps=2)
    assert main(["train", "--config", str(config)]) == 0
    steps = [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl") if "loss" in row]
    assert steps == [1, 2]


def test_resume_naming_trl_defaults_is_the_same_run(run_copy, capsys):
    """A TRL field left out of the YAML is TRL's default: naming that default on --resume changes nothing,
    while any other value is still refused. The default is TRL's own (read from its dataclass here)."""
    import dataclasses

    from trl import SFTConfig

    trl_seed = {f.name: f.default for f in dataclasses.fields(SFTConfig)}["seed"]
    config, run_dir = run_copy
    assert main(["train", "--config", str(config), "train.sft.max_steps=4", f"train.sft.seed={trl_seed}",
                 "--resume"]) == 0
    assert (run_dir / "checkpoint-4").is_dir()
    capsys.readouterr()
    before = snapshot(run_dir)
    other = trl_seed + 1
    assert main(["train", "--config", str(config), "train.sft.max_steps=5", f"train.sft.seed={other}",
                 "--resume"]) == 2
    assert f"train.sft.seed: {trl_seed} -> {other}" in capsys.readouterr().err
    assert snapshot(run_dir) == before


@pytest.fixture
def finished_without_checkpoints(tmp_path, tiny_model_dir):
    """A run saved only at the end (save_strategy "no"): final adapter, provenance, metrics, no checkpoint."""
    config = tmp_path / "train.yaml"
    write_config(config, tiny_model_dir, tmp_path / "run", max_steps=2, save_steps=2, save_strategy="no")
    assert main(["train", "--config", str(config)]) == 0
    run_dir = tmp_path / "run"
    assert not list(run_dir.glob("checkpoint-*")) and (run_dir / "adapter_model.safetensors").is_file()
    return config, run_dir


def finished_files(run_dir):
    names = ("adapter_model.safetensors", "adapter_config.json", "provenance.json", "metrics.jsonl")
    return {name: (run_dir / name).read_bytes() for name in names}


@pytest.mark.parametrize("overrides", [[], ["train.sft.learning_rate=0.5"]])
def test_a_finished_run_without_checkpoints_is_not_replaced(finished_without_checkpoints, capsys, overrides):
    config, run_dir = finished_without_checkpoints
    before = finished_files(run_dir)
    capsys.readouterr()
    assert main(["train", "--config", str(config), *overrides]) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert f"{run_dir} already holds a finished run (adapter_model.safetensors)" in line, err
    assert finished_files(run_dir) == before


def test_resume_from_another_runs_checkpoint_into_a_finished_run_is_refused(
    finished_without_checkpoints, trained_run, capsys
):
    config, run_dir = finished_without_checkpoints
    before = finished_files(run_dir)
    other = trained_run / "run" / "checkpoint-2"
    capsys.readouterr()
    assert main(["train", "--config", str(config), "train.sft.max_steps=3", "--resume-from", str(other)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert finished_files(run_dir) == before


def cut_in_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "name",
    ["optimizer.pt", "scheduler.pt", "rng_state.pth", "adapter_model.safetensors", "adapter_config.json"],
)
def test_a_truncated_file_in_the_newest_checkpoint_falls_back(run_copy, capsys, monkeypatch, name):
    """The files exist, with their names, but a crash or a full disk cut them short."""
    config, run_dir = run_copy
    assert (run_dir / "checkpoint-3" / name).is_file()
    cut_in_half(run_dir / "checkpoint-3" / name)
    monkeypatch.setenv("COLUMNS", "500")
    assert main(["train", "--config", str(config), "train.sft.max_steps=4", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resumed from" in captured.out and "checkpoint-2" in captured.out
    assert f"checkpoint-3 is incomplete ({name} " in captured.err
    state = json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_resume_from_a_truncated_checkpoint_is_one_line(run_copy, capsys):
    config, run_dir = run_copy
    cut_in_half(run_dir / "checkpoint-3" / "optimizer.pt")
    target = run_dir / "checkpoint-3"
    command = ["train", "--config", str(config), "train.sft.max_steps=4", "--resume-from", str(target)]
    assert main(command) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert f"{target}: not a complete checkpoint directory (optimizer.pt is truncated" in line


def test_resume_after_the_model_folder_was_edited_is_refused(tmp_path, tiny_model_dir, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config = tmp_path / "train.yaml"
    write_config(config, model_dir, tmp_path / "run", max_steps=2, save_steps=2)
    assert main(["train", "--config", str(config)]) == 0
    template = model_dir / "chat_template.jinja"
    template.write_text("Answer briefly. " + template.read_text())
    capsys.readouterr()
    assert main(["train", "--config", str(config), "train.sft.max_steps=3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "model.files:" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint-3").exists()


def test_a_record_from_before_the_model_files_fingerprint_still_resumes(run_copy, capsys):
    config, run_dir = run_copy
    record = json.loads((run_dir / "provenance.json").read_text())
    del record["settings"]["model.files"]
    (run_dir / "provenance.json").write_text(json.dumps(record))
    assert main(["train", "--config", str(config), "train.sft.max_steps=4", "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "run").write_text("my notes")
    config = tmp_path / "train.yaml"
    write_config(config, tiny_model_dir, tmp_path / "run", max_steps=1, save_steps=1)
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "output_dir is a file" in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "run").read_text() == "my notes"


def test_training_into_an_eval_output_dir_is_refused(tmp_path, tiny_model_dir, capsys):
    from rarl.config import load_config
    from rarl.eval.harness import run_evaluation

    eval_config = tmp_path / "eval.yaml"
    eval_config.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(tiny_model_dir), "dtype": "float32", "max_pixels": 112 * 112},
                "data": {"eval": [{"source": "synthetic", "split": "test", "num_samples": 2, "seed": 3}]},
                "eval": {"output_dir": str(tmp_path / "out"), "max_new_tokens": 2, "bertscore": False},
            }
        )
    )
    run_evaluation(load_config(eval_config), judges=False, progress=False)
    before = (tmp_path / "out" / "provenance.json").read_bytes()
    config = tmp_path / "train.yaml"
    write_config(config, tiny_model_dir, tmp_path / "out", max_steps=1, save_steps=1)
    capsys.readouterr()
    assert main(["train", "--config", str(config)]) == 2
    assert "holds the outputs of a rarl eval run" in capsys.readouterr().err
    assert (tmp_path / "out" / "provenance.json").read_bytes() == before
