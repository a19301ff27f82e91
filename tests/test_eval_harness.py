"""`rarl eval`, `rarl judge` and `rarl report` end to end on the tiny model; resuming an interrupted eval."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_judge_http import JudgeServer

import rarl.eval.generate as generate_module
from rarl.cli import main
from rarl.config import load_config
from rarl.errors import UserError
from rarl.eval.harness import read_predictions, run_evaluation


def write_config(tmp_path, model_dir, judges=(), **eval_overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = {
        "model": {"name_or_path": str(model_dir), "dtype": "float32", "max_pixels": 112 * 112},
        "data": {"eval": [{"source": "synthetic", "split": "test", "num_samples": 6, "seed": 5}]},
        "eval": {
            "output_dir": str(tmp_path / "eval"),
            "batch_size": 4,
            "max_new_tokens": 8,
            **eval_overrides,
        },
        "judges": list(judges),
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def count_generated(monkeypatch):
    """Counts samples that really went through model.generate."""
    seen: list[str] = []
    original = generate_module.generate_batch

    def counting(model, processor, samples, **kwargs):
        seen.extend(s.id for s in samples)
        return original(model, processor, samples, **kwargs)

    monkeypatch.setattr(generate_module, "generate_batch", counting)
    return seen


def test_interrupted_eval_resumes_without_redoing_finished_items(
    tmp_path, tiny_model_dir, count_generated, monkeypatch
):
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False))
    first = run_evaluation(config, progress=False).to_dict()
    path = tmp_path / "eval" / "predictions.jsonl"
    lines = path.read_text().splitlines()
    assert first["n"] == 6 and len(lines) == 6 and len(count_generated) == 6
    # Simulate a crash after 3 items, in the middle of writing the 4th line.
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    count_generated.clear()
    second = run_evaluation(config, progress=False).to_dict()
    assert second["generation"] == {
        "resumed": 3,
        "generated": 3,
        "generate_s": second["generation"]["generate_s"],
    }
    assert len(count_generated) == 3
    again = read_predictions(path)
    original = [json.loads(line) for line in lines]
    assert [r.key for r in again] == [f"{d['dataset']}/{d['split']}/{d['id']}" for d in original]
    assert path.read_text().splitlines()[:3] == lines[:3] and len(again) == 6
    # Greedy decoding: the regenerated items equal the first run's.
    assert [r.raw_output for r in again] == [json.loads(line)["raw_output"] for line in lines]
    # A finished run loads no model at all.
    import rarl.models

    monkeypatch.setattr(rarl.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    count_generated.clear()
    third = run_evaluation(config, progress=False).to_dict()
    assert third["generation"]["generated"] == 0 and not count_generated
    assert third["rule_metrics"] == second["rule_metrics"]
    # Predictions from another prompt are never mixed in.
    other = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False, prompt="non_reasoning"))
    with pytest.raises(UserError, match=r"eval\.prompt: reasoning -> non_reasoning"):
        run_evaluation(other, progress=False)


def test_cli_eval_then_judge_then_report(tmp_path, tiny_model_dir, monkeypatch, capsys):
    server = JudgeServer()
    server.thread.start()
    try:
        monkeypatch.setenv("RARL_TEST_JUDGE_KEY", "sk-local")
        judges = [
            {
                "name": name,
                "model": name,
                "base_url": server.base_url,
                "api_key_env": "RARL_TEST_JUDGE_KEY",
                "timeout_s": 2.0,
                "backoff_s": 0.01,
                "cache_path": str(tmp_path / "cache.jsonl"),
            }
            for name in ("judge_a", "judge_b")
        ]
        config = write_config(tmp_path, tiny_model_dir, judges=judges)
        monkeypatch.delenv("RARL_TEST_JUDGE_KEY")
        assert main(["eval", "--config", str(config)]) == 2  # refused before any generation
        assert "RARL_TEST_JUDGE_KEY is not set" in capsys.readouterr().err
        assert not (tmp_path / "eval" / "predictions.jsonl").exists()
        monkeypatch.setenv("RARL_TEST_JUDGE_KEY", "sk-local")
        assert main(["eval", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert "judge_a Reasoning %" in out and "judge_b Final %" in out and "BERTScore %" in out
        results = json.loads((tmp_path / "eval" / "results.json").read_text())
        for name in ("judge_a", "judge_b"):
            stats = results["judges"][name]["stats"]
            assert stats["n"] == 6 and stats["ok"] == 6 and stats["requests"] == 6
            assert len((tmp_path / "eval" / "judgements" / f"{name}.jsonl").read_text().splitlines()) == 6
        assert sum(server.requests.values()) == 12

        # Re-judging the same predictions is answered from the cache: no request reaches the server.
        monkeypatch.delenv("RARL_TEST_JUDGE_KEY")
        assert main(["judge", "--config", str(config)]) == 0
        assert "cached=6 requests=0" in capsys.readouterr().out
        assert sum(server.requests.values()) == 12

        assert main(["report", str(tmp_path / "eval"), "--out", str(tmp_path / "report")]) == 0
        report = (tmp_path / "report" / "report.md").read_text()
        assert "Agreement between judges" in report and (tmp_path / "report" / "dataset_scores.png").exists()
        assert main(["eval", "--config", str(config), "eval.prompt=chatty"]) == 2
        assert "valid options" in capsys.readouterr().err
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_eval_with_a_lora_adapter_uses_it(tmp_path, tiny_model_dir, tiny_model_config):
    import torch
    from peft import get_peft_model

    from rarl.config import LoraSettings
    from rarl.models import load_model, lora_config

    model = load_model(tiny_model_config, device="cpu")
    peft_model = get_peft_model(model, lora_config(LoraSettings(r=4, alpha=64)))
    torch.manual_seed(0)
    with torch.no_grad():  # a trained-looking adapter: LoRA B starts at zero, which would change nothing
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    peft_model.save_pretrained(tmp_path / "adapter")

    base = run_evaluation(
        load_config(write_config(tmp_path / "b", tiny_model_dir, bertscore=False)), progress=False
    ).to_dict()
    config = load_config(
        write_config(tmp_path / "a", tiny_model_dir, bertscore=False),
        [f"model.adapter_path={tmp_path / 'adapter'}"],
    )
    adapted = run_evaluation(config, progress=False).to_dict()
    assert adapted["model"] == f"{tiny_model_dir}+{tmp_path / 'adapter'}" and base["model"] == str(
        tiny_model_dir
    )
    base_out = [r.raw_output for r in read_predictions(tmp_path / "b" / "eval" / "predictions.jsonl")]
    adapted_out = [r.raw_output for r in read_predictions(tmp_path / "a" / "eval" / "predictions.jsonl")]
    assert base_out != adapted_out


def test_a_real_interruption_keeps_finished_batches(tmp_path, tiny_model_dir, monkeypatch):
    original = generate_module.generate_batch
    calls = []

    def interrupted(model, processor, samples, **kwargs):
        calls.append(len(samples))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl+C during the second batch
        return original(model, processor, samples, **kwargs)

    monkeypatch.setattr(generate_module, "generate_batch", interrupted)
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False, batch_size=4))
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(config, progress=False)
    assert len(read_predictions(tmp_path / "eval" / "predictions.jsonl")) == 4
    assert not (tmp_path / "eval" / "results.json").exists()
    calls.clear()
    monkeypatch.setattr(
        generate_module, "generate_batch", lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    )
    results = run_evaluation(config, progress=False).to_dict()
    assert results["generation"]["resumed"] == 4 and results["generation"]["generated"] == 2 and calls == [1]


def test_resume_reads_line_separators_and_redoes_a_last_line_torn_inside_a_character(
    tmp_path, tiny_model_dir, count_generated
):
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False))
    run_evaluation(config, progress=False)
    path = tmp_path / "eval" / "predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    # Characters json.dumps writes raw (str.splitlines breaks at them) in an output and an extra field ...
    rows[0]["raw_output"] += " \u2028 \u2029 \u0085"
    rows[1]["extra"] = {"note": "a\u2028b"}
    lines = [json.dumps(row, ensure_ascii=False) for row in rows[:-1]]
    # ... and a disk-full append that stopped one byte into a Chinese character of the last record.
    rows[-1]["raw_output"] = "肺部正常" * 10
    last = json.dumps(rows[-1], ensure_ascii=False).encode()
    path.write_bytes(("\n".join(lines) + "\n").encode() + last[: last.index("正".encode()) + 1])
    count_generated.clear()
    again = run_evaluation(config, progress=False).to_dict()
    assert (again["generation"]["resumed"], again["generation"]["generated"]) == (5, 1)
    assert len(count_generated) == 1
    kept = read_predictions(path)
    assert [r.raw_output for r in kept[:2]] == [rows[0]["raw_output"], rows[1]["raw_output"]]
    assert kept[1].extra == {"note": "a\u2028b"} and len(kept) == 6


def test_a_second_eval_into_a_busy_directory_is_refused_at_once(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    config_path = write_config(tmp_path, tiny_model_dir, bertscore=False, batch_size=2)
    original = generate_module.generate_batch
    second: list[tuple[int, str]] = []

    def racing(model, processor, samples, **kwargs):
        if not second:  # while the first run generates its first batch, a second run starts on the same dir
            capsys.readouterr()
            code = main(["eval", "--config", str(config_path), "--no-judges"])
            second.append((code, capsys.readouterr().err))
        return original(model, processor, samples, **kwargs)

    monkeypatch.setattr(generate_module, "generate_batch", racing)
    first = run_evaluation(load_config(config_path), progress=False).to_dict()
    [(code, err)] = second
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'eval'}: another rarl process (pid {os.getpid()}) is writing here now" in err
    keys = [
        json.loads(line)["id"] for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    ]
    assert first["n"] == 6 and len(keys) == len(set(keys)) == 6  # every item written once
    # Once the first run is over, the directory is free again.
    assert main(["eval", "--config", str(config_path), "--no-judges"]) == 0


def test_a_killed_writer_leaves_no_stale_lock(tmp_path, tiny_model_dir, capsys):
    config_path = write_config(tmp_path, tiny_model_dir, bertscore=False)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rarl.io import directory_lock\n"
            "with directory_lock(sys.argv[1], hint='wait'):\n    print('held', flush=True); time.sleep(120)",
            str(tmp_path / "eval"),
        ],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["eval", "--config", str(config_path), "--no-judges"]) == 2
        assert f"(pid {holder.pid}) is writing here now" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["eval", "--config", str(config_path), "--no-judges"]) == 0


def test_resume_repairs_a_file_holding_items_twice(tmp_path, tiny_model_dir, count_generated, capsys):
    config = load_config(write_config(tmp_path, tiny_model_dir, bertscore=False))
    run_evaluation(config, progress=False)
    path = tmp_path / "eval" / "predictions.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    copies = [json.loads(lines[i]) | {"raw_output": f"a later copy {i}"} for i in (0, 2)]
    path.write_text("\n".join(lines + [json.dumps(c) for c in copies]) + "\n", encoding="utf-8")
    # Scoring the file as it is would count two items twice: refused, saying how to repair it.
    judge = tmp_path / "judge.yaml"
    judge.write_text(yaml.safe_dump({"judges": [{"name": "j", "api_key_env": ""}]}))
    assert main(["judge", "--config", str(judge), "--predictions", str(path)]) == 2
    assert "rerunning `rarl eval` on its directory keeps the first" in capsys.readouterr().err
    count_generated.clear()
    again = run_evaluation(config, progress=False).to_dict()
    assert again["generation"]["generated"] == 0 and not count_generated
    assert "2 duplicate predictions dropped" in " ".join(capsys.readouterr().err.split())
    assert path.read_text(encoding="utf-8").splitlines() == lines  # the first of each kept, in order


def test_an_output_dir_that_cannot_be_one_is_refused_before_any_work(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    config_path = write_config(tmp_path, tiny_model_dir, bertscore=False)
    (tmp_path / "cwd").mkdir()
    (tmp_path / "a-file").write_text("keep")
    monkeypatch.chdir(tmp_path / "cwd")
    for value, problem in [
        ("", "eval.output_dir: must not be empty"),
        (str(tmp_path / "a-file"), "eval.output_dir must name a directory, but it is a file"),
    ]:
        assert main(["eval", "--config", str(config_path), f"eval.output_dir={value}"]) == 2
        err = capsys.readouterr().err
        assert problem in err and "Traceback" not in err
    assert not list((tmp_path / "cwd").iterdir()) and (tmp_path / "a-file").read_text() == "keep"


def test_a_full_disk_during_eval_is_one_line_and_the_rerun_resumes(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    from test_io import fill_disk_on

    config_path = write_config(tmp_path, tiny_model_dir, bertscore=False, batch_size=2)
    path = tmp_path / "eval" / "predictions.jsonl"
    with monkeypatch.context() as patch:
        fill_disk_on(patch, "predictions.jsonl", room=2500)  # room for a few of the six lines
        assert main(["eval", "--config", str(config_path), "--no-judges"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rarl eval:")]
    assert err == [
        f"rarl eval: error: {path}: cannot write: no space left on device; free some space and rerun"
    ]
    kept = path.read_text(encoding="utf-8")
    assert kept.endswith("\n") and 0 < len(kept.splitlines()) < 6  # whole lines only
    assert main(["eval", "--config", str(config_path), "--no-judges"]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["generation"]["resumed"] == len(kept.splitlines()) and results["n"] == 6


def test_eval_prompt_training_template_asks_each_item_as_training_would(
    tmp_path, tiny_model_dir, monkeypatch
):
    """eval.prompt: training_template renders the template training gives each item (its own oracle:
    rarl.train.dataset.template_names); the template choice is part of the run's settings."""
    from rarl.eval.harness import load_eval_samples
    from rarl.prompts import TRAINING_TEMPLATES
    from rarl.train.dataset import template_names

    rendered: dict[str, str] = {}
    original = generate_module.render_prompt

    def recording(processor, sample, prompt, messages_fn=None):
        text = original(processor, sample, prompt, messages_fn)
        rendered[sample.id] = text
        return text

    monkeypatch.setattr(generate_module, "render_prompt", recording)
    path = write_config(tmp_path, tiny_model_dir, bertscore=False, prompt="training_template")
    config = load_config(path, ["data.seed=3"])
    results = run_evaluation(config, progress=False)
    samples = load_eval_samples(config)
    expected = template_names(samples, config.data)
    assert len(set(expected)) > 1  # prompting diversity: more than one template among the 6 items
    for sample, name in zip(samples, expected, strict=True):
        head = TRAINING_TEMPLATES[name].split("{question}")[0]
        assert head in rendered[sample.id] and "Medical Assistant. The User asks" not in rendered[sample.id]
    assert results.prompt == "training_template"
    assert {r.prompt for r in read_predictions(tmp_path / "eval" / "predictions.jsonl")} == {
        "training_template"
    }
    with pytest.raises(UserError, match=r"data\.seed"):  # other templates: not the same predictions
        run_evaluation(load_config(path, ["data.seed=4"]), progress=False)
