"""`rarl export`: a LoRA adapter on the tiny Qwen2-VL merged into a standalone directory, and its model card.

The adapter is made as training leaves one (PEFT's ``save_pretrained`` of a LoRA on the tiny model, the
processor and ``resolved_config.yaml`` beside it), with random LoRA weights so that the adapter changes
the logits: the merged model must reproduce base + adapter, not the base.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from rarl.cli import main
from rarl.config import ModelConfig, RunConfig, save_config
from rarl.schema.sample import Sample


@pytest.fixture(scope="module")
def adapter_run(tmp_path_factory, tiny_model_dir):
    from peft import get_peft_model

    from rarl.models import load_model, load_processor, lora_config

    run_dir = tmp_path_factory.mktemp("run")
    config = RunConfig(
        model=ModelConfig(
            name_or_path=str(tiny_model_dir), dtype="float32", min_pixels=28 * 28, max_pixels=64 * 64
        )
    )
    model = get_peft_model(load_model(config.model), lora_config(config.lora))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    model.save_pretrained(run_dir)
    load_processor(config.model).save_pretrained(run_dir)
    save_config(config, run_dir)
    return run_dir, config


def _inputs(processor):
    from rarl.eval.generate import render_prompt

    image = Image.new("RGB", (60, 50), (90, 30, 200))
    image.paste((250, 250, 10), (10, 10, 30, 40))
    sample = Sample(
        id="1", dataset="d", split="test", question="Mass?", answer="no", question_type="closed", image=image
    )
    text = render_prompt(processor, sample, "reasoning")
    return processor(text=[text], images=[image], return_tensors="pt")


def test_merged_logits_equal_base_plus_adapter_and_load_without_peft(adapter_run, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rarl.models import load_model, load_processor

    run_dir, config = adapter_run
    out = tmp_path / "merged"
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--dtype", "float32"]) == 0
    assert not (out / "adapter_config.json").exists() and (out / "config.json").is_file()
    assert not list(tmp_path.glob(".merged.*"))  # no staging directory left behind

    processor = AutoProcessor.from_pretrained(out)  # standalone: the exported directory alone
    assert dict(processor.image_processor.size) == {"shortest_edge": 28 * 28, "longest_edge": 64 * 64}
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert preprocessor["min_pixels"] == 28 * 28 and preprocessor["max_pixels"] == 64 * 64

    inputs = _inputs(load_processor(config.model))
    merged = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).eval()
    assert type(merged).__name__ == "Qwen2VLForConditionalGeneration" and not hasattr(merged, "peft_config")
    with_adapter = load_model(ModelConfig(**{**vars(config.model), "adapter_path": str(run_dir)})).eval()
    base = load_model(config.model).eval()
    with torch.no_grad():
        merged_logits = merged(**inputs).logits
        adapter_logits = with_adapter(**inputs).logits
        base_logits = base(**inputs).logits
    assert (adapter_logits - base_logits).abs().max() > 1e-2  # the adapter matters ...
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-5, rtol=1e-5)  # ... and is merged in
    assert torch.equal(_inputs(processor)["pixel_values"], inputs["pixel_values"])  # same image preprocessing


def test_model_card_carries_the_run_and_its_results(adapter_run, tmp_path, tiny_model_dir):
    import yaml
    from huggingface_hub import ModelCard

    from rarl.config import load_config
    from rarl.eval.harness import run_evaluation

    run_dir, _ = adapter_run
    eval_dir = tmp_path / "eval"
    config_path = tmp_path / "eval.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(tiny_model_dir), "adapter_path": str(run_dir)},
                "data": {"eval": [{"source": "synthetic", "num_samples": 4, "name": "synth"}]},
                "eval": {"output_dir": str(eval_dir), "max_new_tokens": 4, "bertscore": False},
            }
        )
    )
    run_evaluation(load_config(config_path), progress=False)
    written = json.loads((eval_dir / "results.json").read_text())["rule_metrics"]["datasets"]["synth"]
    out = tmp_path / "merged"
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--results", str(eval_dir)]) == 0

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "transformers" and "grpo" in card.data.tags and "lora" in card.data.tags
    assert card.data.base_model is None  # a local folder is no hub id; named in the text instead
    assert str(tiny_model_dir) in card.text
    adapter = json.loads((run_dir / "adapter_config.json").read_text())
    assert f"LoRA r={adapter['r']}, alpha={adapter['lora_alpha']}" in card.text
    (result,) = card.data.eval_results
    low, high = (100 * x for x in written["rarl.accuracy_ci"])
    value = written["rarl.accuracy"]
    assert result.dataset_name == "synth" and result.metric_type == "accuracy"
    assert result.metric_value == pytest.approx(round(100 * value, 2))
    assert f"{100 * value:.1f} [{low:.1f}, {high:.1f}] | 4 |" in card.text  # value, interval and n


def test_card_metadata_names_a_hub_base_and_hub_datasets(tmp_path):
    from huggingface_hub import ModelCard

    from rarl.export.card import build_model_card, find_results

    run = tmp_path / "eval-a"
    run.mkdir()
    results = {
        "model": "m",
        "prompt": "reasoning",
        "n": 40,
        "datasets": ["vqa_rad"],
        "rule_metrics": {
            "datasets": {"vqa_rad": {"n": 40, "rarl.accuracy": 0.625, "rarl.accuracy_ci": [0.47, 0.76]}},
        },
        "judges": {
            "gpt": {"model": "gpt-4o-mini", "summary": {"datasets": {"vqa_rad": {"n": 40, "final": 55.0}}}},
        },
    }
    (run / "results.json").write_text(json.dumps(results))
    control = tmp_path / "eval-blank"
    control.mkdir()
    blank = {**results, "image_control": {"control": "blank", "seed": 0}}
    (control / "results.json").write_text(json.dumps(blank))
    card = build_model_card(
        name="me/rarl-2b",
        base_model="Qwen/Qwen2-VL-2B-Instruct",
        method="sft",
        adapter_config={"r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "target_modules": ["q_proj"]},
        train_datasets=[("medreason", "someone/med-reasoning"), ("local", None)],
        runs=find_results([run, control], tmp_path),
        adapter_dir="outputs/run",
    )
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.base_model == "Qwen/Qwen2-VL-2B-Instruct"
    assert loaded.data.datasets == ["someone/med-reasoning"]
    values = {(r.dataset_name, r.metric_name): r.metric_value for r in loaded.data.eval_results}
    assert values == {
        ("vqa_rad", "rarl accuracy (reasoning prompt)"): 62.5,
        ("vqa_rad", "gpt final (reasoning prompt)"): 55.0,
    }  # the blank-image control run is no result
    assert "62.5 [47.0, 76.0] | 40 |" in loaded.text
    assert "`eval-blank`: blank images" in loaded.text
    # the judge's interval: Wilson for 22 of 40 (scipy-free oracle: statsmodels' formula by hand)
    z = 1.959963984540054
    p, n = 22 / 40, 40
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    assert f"55.0 [{100 * (centre - half):.1f}, {100 * (centre + half):.1f}] | 40 |" in loaded.text


def test_export_refuses_an_existing_out_and_a_run_without_adapter(adapter_run, tmp_path, capsys):
    run_dir, _ = adapter_run
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    empty = tmp_path / "train-run"
    (empty / "checkpoint-5").mkdir(parents=True)
    assert main(["export", "--run", str(empty), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no final adapter here" in err and "checkpoint-N" in err and "Traceback" not in err


def test_push_to_hub_offline_is_one_line_and_keeps_the_export(adapter_run, tmp_path, capsys, monkeypatch):
    """The upload itself cannot run here (no network): only that its failure is one line."""
    run_dir, _ = adapter_run
    out = tmp_path / "merged"
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    assert main(["export", "--run", str(run_dir), "--out", str(out), "--push-to-hub", "me/tiny-rarl"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error" in line.lower()]  # progress bars aside
    assert "--push-to-hub me/tiny-rarl: upload failed" in line and "Traceback" not in err
    assert (out / "README.md").is_file() and (out / "config.json").is_file()


class ScriptedHub:
    """The few Hugging Face Hub endpoints ``create_repo`` + ``upload_folder`` call, on 127.0.0.1: it records
    every request and answers as the hub does for small files (upload mode "regular": contents in the
    commit itself)."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str, dict, bytes]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                hub.requests.append(("GET", self.path, dict(self.headers), b""))
                self.reply(404, {"error": "not scripted"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                hub.requests.append(("POST", self.path, headers, body))
                if self.path == "/api/repos/create":
                    repo = json.loads(body)
                    return self.reply(200, {"url": f"{hub.endpoint}/{repo['organization']}/{repo['name']}"})
                if self.path == "/api/validate-yaml":
                    return self.reply(200, {"errors": [], "warnings": []})
                if "/preupload/" in self.path:
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                        for f in json.loads(body)["files"]
                    ]
                    return self.reply(200, {"files": modes})
                if "/commit/" in self.path:
                    url = f"{hub.endpoint}/me/tiny-rarl/commit/{'a' * 40}"
                    return self.reply(200, {"commitUrl": url, "commitOid": "a" * 40, "pullRequestUrl": None})
                return self.reply(404, {"error": "not scripted"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def posts(self, fragment):
        return [(headers, body) for method, path, headers, body in self.requests if fragment in path]


def test_push_to_hub_creates_the_repo_and_commits_every_exported_file(adapter_run, tmp_path):
    """``rarl export --push-to-hub`` in a fresh process pointed at a scripted hub (HF_ENDPOINT): the
    requests it sends are the upload's, not a stand-in's. (The real hub was never reached from here.)"""
    import base64
    import os
    import subprocess
    import sys

    run_dir, _ = adapter_run
    hub = ScriptedHub()
    out = tmp_path / "merged"
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_test_token"}
    env.pop("TRANSFORMERS_OFFLINE", None)
    command = [sys.executable, "-m", "rarl", "export", "--run", str(run_dir), "--out", str(out)]
    command += ["--push-to-hub", "me/tiny-rarl", "--private"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        ((headers, body),) = hub.posts("/api/repos/create")
        expected = {"name": "tiny-rarl", "organization": "me", "visibility": "private", "type": "model"}
        assert json.loads(body) == expected
        assert headers["authorization"] == "Bearer hf_test_token"
        ((_, commit),) = hub.posts("/api/models/me/tiny-rarl/commit/main")
        lines = [json.loads(line) for line in commit.decode().splitlines()]
        files = {entry["value"]["path"]: base64.b64decode(entry["value"]["content"]) for entry in lines[1:]}
        on_disk = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
        assert files == on_disk  # every file of the export, byte for byte, and nothing else
        assert "README.md" in files and "model.safetensors" in files and "preprocessor_config.json" in files
    finally:
        hub.httpd.shutdown()
        hub.httpd.server_close()
