"""A rerun of `rarl eval` resumes only predictions made by the same settings from the same items."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from PIL import Image

from rarl.cli import main
from rarl.config import load_config
from rarl.errors import UserError
from rarl.eval.harness import read_predictions, run_evaluation


def write_jsonl_dataset(folder, answers=("yes", "no", "left"), colours=("red", "blue", "green")):
    """A reasoning_jsonl test split with images on disk, so tests can change items under the same ids."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, (answer, colour) in enumerate(zip(answers, colours, strict=True)):
        Image.new("RGB", (56, 56), colour).save(folder / f"img{index}.png")
        rows.append(
            {
                "id": f"q{index}",
                "question": f"Is there a lesion in image {index}?",
                "answer": answer,
                "reasoning": "looked at it",
                "image": f"img{index}.png",
            }
        )
    (folder / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def write_config(tmp_path, model_dir, dataset, **eval_overrides):
    data = {
        "model": {"name_or_path": str(model_dir), "dtype": "float32", "max_pixels": 112 * 112},
        "data": {"eval": [{"source": "reasoning_jsonl", "path": str(dataset), "split": "test"}]},
        "eval": {
            "output_dir": str(tmp_path / "eval"),
            "batch_size": 3,
            "max_new_tokens": 4,
            "bertscore": False,
            **eval_overrides,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def finished_run(tmp_path, tiny_model_dir):
    dataset = write_jsonl_dataset(tmp_path / "data")
    config_path = write_config(tmp_path, tiny_model_dir, dataset)
    run_evaluation(load_config(config_path), progress=False)
    out = tmp_path / "eval"
    return config_path, dataset, out, (out / "resolved_config.yaml").read_text()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("eval.max_new_tokens=6", "eval.max_new_tokens: 4 -> 6"),
        ("eval.do_sample=true", "eval.do_sample: false -> true"),
        ("model.max_pixels=50176", "model.max_pixels: 12544 -> 50176"),
    ],
)
def test_changed_generation_settings_are_refused_and_the_config_kept(finished_run, capsys, override, named):
    config_path, _, out, saved = finished_run
    before = (out / "predictions.jsonl").read_text()
    assert main(["eval", "--config", str(config_path), override, "--no-judges"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("rarl eval: error:")]
    assert named in line and "--overwrite" in line and "Traceback" not in err
    assert (out / "resolved_config.yaml").read_text() == saved  # never describes settings it did not use
    assert (out / "predictions.jsonl").read_text() == before
    # A setting that changes no output (batch size) still resumes everything.
    assert main(["eval", "--config", str(config_path), "eval.batch_size=1", "--no-judges"]) == 0
    assert "3 resumed, 0 generated" in capsys.readouterr().out


@pytest.mark.parametrize("change", ["answer", "question", "image"])
def test_changed_items_under_the_same_ids_are_refused(finished_run, tiny_model_dir, change):
    config_path, dataset, out, saved = finished_run
    # A new version of the dataset in another folder: same ids, one item changed.
    dataset = shutil.copytree(dataset, dataset.parent / "data_v2")
    if change == "image":
        Image.new("RGB", (56, 56), "white").save(dataset / "img1.png")
    else:
        rows = [json.loads(line) for line in (dataset / "test.jsonl").read_text().splitlines()]
        rows[1][change] = "changed " + rows[1][change]
        (dataset / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config_path = write_config(config_path.parent, tiny_model_dir, dataset)
    with pytest.raises(UserError, match=r"1 of the 3 items changed .* e\.g\. reasoning_jsonl/test/q1"):
        run_evaluation(load_config(config_path), progress=False)
    assert (out / "resolved_config.yaml").read_text() == saved  # still names the data that was used
    # Starting fresh is one flag away, and then the new references are the ones scored.
    results = run_evaluation(load_config(config_path), overwrite=True, progress=False).to_dict()
    assert results["generation"]["generated"] == 3
    records = {r.id: r for r in read_predictions(out / "predictions.jsonl")}
    if change == "answer":
        assert records["q1"].reference_answer == "changed no"


def test_a_retrained_adapter_at_the_same_path_is_noticed(tmp_path, tiny_model_dir, tiny_model_config):
    import torch
    from peft import get_peft_model

    from rarl.config import LoraSettings
    from rarl.models import load_model, lora_config

    def save_adapter(seed):
        model = get_peft_model(load_model(tiny_model_config, device="cpu"), lora_config(LoraSettings(r=2)))
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.5)
        model.save_pretrained(tmp_path / "adapter")

    dataset = write_jsonl_dataset(tmp_path / "data")
    save_adapter(0)
    config_path = write_config(tmp_path, tiny_model_dir, dataset)
    overrides = [f"model.adapter_path={tmp_path / 'adapter'}"]
    run_evaluation(load_config(config_path, overrides), progress=False)
    save_adapter(1)
    with pytest.raises(UserError, match=r"model\.adapter_weights"):
        run_evaluation(load_config(config_path, overrides), progress=False)


def test_predictions_without_provenance_are_not_trusted(finished_run):
    config_path, _, out, _ = finished_run
    (out / "provenance.json").unlink()
    with pytest.raises(UserError, match=r"without a provenance\.json"):
        run_evaluation(load_config(config_path), progress=False)


def test_overwrite_removes_stale_judgements_and_results(finished_run):
    config_path, _, out, _ = finished_run
    (out / "judgements").mkdir()
    (out / "judgements" / "old_judge.jsonl").write_text('{"key": "x"}\n')
    results = run_evaluation(load_config(config_path), judges=False, overwrite=True, progress=False).to_dict()
    assert results["generation"]["generated"] == 3
    assert not (out / "judgements").exists()
    assert json.loads((out / "provenance.json").read_text())["kind"] == "eval"
    # Outputs get the mode any new file gets (atomic writes used to leave them 0600).
    (out / "plain.txt").write_text("x")
    ordinary = (out / "plain.txt").stat().st_mode & 0o777
    for name in ("results.json", "provenance.json", "resolved_config.yaml", "predictions.jsonl"):
        assert (out / name).stat().st_mode & 0o777 == ordinary, name


def test_ctrl_c_keeps_finished_batches_and_says_how_to_resume(finished_run, capsys, monkeypatch):
    import rarl.eval.generate as generate_module

    config_path, _, out, _ = finished_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, "generate_batch", interrupted)
    assert main(["eval", "--config", str(config_path), "--overwrite", "--no-judges"]) == 130
    err = capsys.readouterr().err
    assert "rerun the same command (without --overwrite) to resume" in err and str(out) in err


def test_added_items_are_generated_and_finished_ones_resumed(finished_run, tiny_model_dir, capsys):
    config_path, dataset, out, _ = finished_run
    grown = write_jsonl_dataset(
        dataset.parent / "grown",
        answers=("yes", "no", "left", "right"),
        colours=("red", "blue", "green", "gray"),
    )
    config_path = write_config(config_path.parent, tiny_model_dir, grown)  # same items 0-2, one more
    assert main(["eval", "--config", str(config_path), "--no-judges"]) == 0
    assert "4 items (3 resumed, 1 generated" in capsys.readouterr().out
    assert [r.id for r in read_predictions(out / "predictions.jsonl")] == ["q0", "q1", "q2", "q3"]


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data, indent=4))


def test_an_edited_adapter_config_is_noticed(tmp_path, tiny_model_dir, tiny_model_config):
    """lora_alpha scales every adapter output: 16 -> 64 is another model, though no weight changed."""
    from peft import get_peft_model

    from rarl.config import LoraSettings
    from rarl.models import load_model, lora_config

    model = get_peft_model(load_model(tiny_model_config, device="cpu"), lora_config(LoraSettings(r=2)))
    model.save_pretrained(tmp_path / "adapter")
    config_file = tmp_path / "adapter" / "adapter_config.json"
    dataset = write_jsonl_dataset(tmp_path / "data")
    config_path = write_config(tmp_path, tiny_model_dir, dataset)
    overrides = [f"model.adapter_path={tmp_path / 'adapter'}"]
    run_evaluation(load_config(config_path, overrides), progress=False)
    # Re-indenting the file changes nothing it says: still resumed.
    config_file.write_text(json.dumps(json.loads(config_file.read_text()), indent=1))
    results = run_evaluation(load_config(config_path, overrides), progress=False).to_dict()
    assert results["generation"]["resumed"] == 3
    _edit_json(config_file, lora_alpha=64)
    with pytest.raises(UserError, match=r"model\.adapter_config"):
        run_evaluation(load_config(config_path, overrides), progress=False)


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("generation_config.json", lambda p: _edit_json(p, repetition_penalty=1.5)),
        ("chat_template.jinja", lambda p: p.write_text("Answer briefly. " + p.read_text())),
        ("config.json", lambda p: _edit_json(p, rms_norm_eps=0.1)),
    ],
)
def test_an_edited_file_of_a_local_model_folder_is_noticed(tmp_path, tiny_model_dir, name, edit):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config_path = write_config(tmp_path, model_dir, write_jsonl_dataset(tmp_path / "data"))
    run_evaluation(load_config(config_path), progress=False)
    edit(model_dir / name)
    with pytest.raises(UserError, match=r"model\.files"):
        run_evaluation(load_config(config_path), progress=False)
