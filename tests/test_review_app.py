"""The rating page through Flask's test client: rendering, escaping, blinding, saving, images, safety."""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from rarl.errors import DataError, UserError
from rarl.review.app import create_app, create_server, item_token, load_items

XSS = '<script>alert("pwned")</script><img src=x onerror=alert(1)>'


def make_predictions(
    directory: Path,
    *,
    models: tuple[str, ...] = ("qwen2vl-2b-rarl",),
    prompts: tuple[str, ...] = ("reasoning",),
) -> Path:
    """Write a predictions.jsonl with 3 items per model and real PNG/JPG/BMP images next to it.

    Image paths are relative to the predictions file, as `rarl eval` writes them for copied images.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "images").mkdir(exist_ok=True)
    Image.new("RGB", (32, 24), (200, 10, 10)).save(directory / "images" / "chest.png")
    Image.new("RGB", (20, 20), (10, 200, 10)).save(directory / "images" / "brain.jpg")
    Image.new("RGB", (16, 12), (10, 10, 200)).save(directory / "images" / "knee.bmp")
    base = [
        (
            "1",
            "Is there a pleural effusion?",
            "yes",
            "images/chest.png",
            "Blunted costophrenic angle.",
            "yes",
        ),
        ("2", "Which lobe has the lesion?", "left frontal", "images/brain.jpg", None, XSS),
        ("3", "Is the knee joint space narrowed?", "no", "images/knee.bmp", "Joint space preserved.", "no"),
    ]
    rows = []
    for model, prompt in ((m, p) for m in models for p in prompts):
        for item_id, question, ref, image, ref_reasoning, pred in base:
            shown = pred if prompt == "reasoning" else f"{pred} "  # another run's output differs in text
            rows.append(
                {
                    "id": item_id,
                    "dataset": "synthetic",
                    "split": "test",
                    "question": question,
                    "question_type": "closed" if ref in ("yes", "no") else "open",
                    "reference_answer": ref,
                    "model": model,
                    "prompt": prompt,
                    "raw_output": f"<think>Looking at the image.</think><answer>{shown}</answer>",
                    "pred_reasoning": "Looking at the image.",
                    "pred_answer": pred,
                    "reference_reasoning": ref_reasoning,
                    "image": image,
                    "modality": "X-ray",
                }
            )
    path = directory / "predictions.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def client_for(tmp_path: Path):
    def build(**kwargs: Any):
        models = kwargs.pop("models", ("qwen2vl-2b-rarl",))
        prompts = kwargs.pop("prompts", ("reasoning",))
        predictions = make_predictions(tmp_path / "run", models=models, prompts=prompts)
        app = create_app(predictions, tmp_path / "ratings.sqlite", **kwargs)
        app.testing = True
        return app, app.test_client()

    return build


def _form(html: str) -> dict[str, str]:
    token = re.search(r'name="token" value="([0-9a-f]+)"', html)
    assert token, html
    return {"token": token.group(1)}


def test_index_and_rater_redirect(client_for) -> None:
    _, client = client_for()
    page = client.get("/")
    assert page.status_code == 200 and "3 predictions to rate" in page.text
    response = client.post("/", data={"rater": "  Dr   Smith "})
    assert response.status_code == 303 and response.headers["Location"].endswith("/rate/Dr%20Smith/")
    response = client.get("/rate/Dr%20Smith/")
    assert response.status_code == 303 and response.headers["Location"].endswith("/rate/Dr%20Smith/0")
    bad = client.post("/", data={"rater": "<b>x</b>"})
    assert bad.status_code == 400 and "is not allowed" in bad.text and "<b>x</b>" not in bad.text


def test_item_page_shows_everything_and_escapes_predictions(client_for) -> None:
    _, client = client_for()
    page = client.get("/rate/alice/0").text
    for text in (
        "Is there a pleural effusion?",
        "Blunted costophrenic angle.",
        "Looking at the image",
        "X-ray",
    ):
        assert text in page
    assert "qwen2vl-2b-rarl" in page  # not blinded
    assert "0 / 3 rated" in page and "Item 1 of 3" in page
    assert "<kbd>1</kbd>" in page and "<kbd>y</kbd>" in page and "<kbd>Enter</kbd>" in page

    xss_page = client.get("/rate/alice/1").text
    assert "<script>alert" not in xss_page and "onerror=alert(1)>" not in xss_page.replace("&gt;", "")
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in xss_page
    assert "No reference reasoning" in xss_page
    # the only script on the page is our own static file
    assert re.findall(r"<script[^>]*>", xss_page) == ['<script src="/static/review.js">']


def test_security_headers_and_cross_origin_posts(client_for) -> None:
    _, client = client_for()
    page = client.get("/rate/alice/0")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    data = {**_form(page.text), "reasoning_score": "1", "prediction_score": "1"}
    evil = client.post("/rate/alice/0", data=data, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    sandboxed = client.post("/rate/alice/0", data=data, headers={"Origin": "null"})
    assert sandboxed.status_code == 403
    ok = client.post("/rate/alice/0", data=data, headers={"Origin": "http://localhost"})
    assert ok.status_code == 303


def test_dns_rebinding_is_refused_when_bound_to_loopback(client_for, tmp_path: Path) -> None:
    _, client = client_for()
    for host in ("127.0.0.1:8765", "localhost", "[::1]:8765"):
        assert client.get("/", headers={"Host": host}).status_code == 200
    rebound = client.get("/rate/alice/0", headers={"Host": "evil.example:8765"})
    assert rebound.status_code == 403 and "Is there a pleural effusion?" not in rebound.text
    # bound to all interfaces on purpose (--host 0.0.0.0): any host name is accepted
    app = create_app(make_predictions(tmp_path / "lan"), tmp_path / "lan.sqlite", host="0.0.0.0")
    assert app.test_client().get("/", headers={"Host": "ward-pc.hospital.local:8765"}).status_code == 200


def test_save_redirects_to_next_and_double_submit_is_one_row(client_for, tmp_path: Path) -> None:
    _, client = client_for()
    page = client.get("/rate/alice/0").text
    data = {**_form(page), "reasoning_score": "1", "prediction_score": "0", "comment": "  fine  "}
    first = client.post("/rate/alice/0", data=data)
    second = client.post("/rate/alice/0", data=data)  # browser re-POST / double click
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"].endswith("/rate/alice/1")
    with sqlite3.connect(tmp_path / "ratings.sqlite") as conn:
        rows = conn.execute(
            "SELECT rater, item_key, reasoning_score, prediction_score, comment FROM ratings"
        ).fetchall()
    assert rows == [("alice", "synthetic/test/1", 1, 0, "fine")]

    again = client.get("/rate/alice/0").text
    assert "1 / 3 rated" in again and 'value="0" checked' in again and 'value="fine"' in again


def test_incomplete_or_stale_submissions_are_refused(client_for, tmp_path: Path) -> None:
    _, client = client_for()
    token = _form(client.get("/rate/alice/0").text)
    missing = client.post("/rate/alice/0", data={**token, "reasoning_score": "1"})
    assert missing.status_code == 400 and "prediction_score must be 0 or 1" in missing.text
    stale = client.post("/rate/alice/1", data={**token, "reasoning_score": "1", "prediction_score": "1"})
    assert stale.status_code == 409
    assert client.get("/rate/alice/7").status_code == 404
    assert client.get("/rate/%3Cx%3E/0").status_code == 400
    with sqlite3.connect(tmp_path / "ratings.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0


def test_last_item_leads_to_done_page(client_for) -> None:
    _, client = client_for()
    for pos in range(3):
        data = {**_form(client.get(f"/rate/bob/{pos}").text), "reasoning_score": "1", "prediction_score": "1"}
        response = client.post(f"/rate/bob/{pos}", data=data)
    assert response.headers["Location"].endswith("/rate/bob/")
    done = client.get("/rate/bob/", follow_redirects=True)
    assert "All done" in done.text and "rated 3 of 3" in done.text
    assert "bob" in client.get("/").text  # known raters can continue from the start page


def test_blind_mode_hides_model_and_shuffles_per_rater(client_for) -> None:
    models = ("model-alpha", "model-beta")
    _, client = client_for(blind=True, seed=3, models=models)

    def order(rater: str) -> list[str]:
        seen = []
        for pos in range(6):
            page = client.get(f"/rate/{rater}/{pos}").text
            assert "model-alpha" not in page and "model-beta" not in page
            seen.append(_form(page)["token"])
        return seen

    plain_app, _ = client_for(models=models)
    file_order = [item.token for item in plain_app.config["REVIEW_ITEMS"]]
    alice, bob = order("alice"), order("bob")
    assert sorted(alice) == sorted(bob) == sorted(file_order)
    assert alice != file_order and alice != bob
    assert order("alice") == alice  # seeded: a reload shows the same order


def test_two_runs_of_one_model_are_rated_side_by_side_blind(client_for) -> None:
    """The reasoning and the non-reasoning run of one model in one blinded file: six outputs to rate, and
    rating one run's output never counts as rating the other's."""
    app, client = client_for(blind=True, prompts=("reasoning", "non_reasoning"))
    assert len(app.config["REVIEW_ITEMS"]) == 6
    for pos in range(3):
        page = client.get(f"/rate/alice/{pos}").text
        scores = {"reasoning_score": "1", "prediction_score": "1"}
        client.post(f"/rate/alice/{pos}", data={**_form(page), **scores})
    done = client.get("/rate/alice/done").text
    assert "rated 3 of 6" in done
    store = app.config["REVIEW_STORE"]
    rated = store.rated_by("alice")
    prompts = [ident[1] for ident in rated]
    assert len(rated) == 3 and set(prompts) <= {"reasoning", "non_reasoning"}


def test_blind_pages_do_not_leak_the_model(client_for) -> None:
    _, client = client_for(blind=True, models=("secret-model",))
    for url in ("/", "/rate/alice/0", "/rate/alice/1", "/rate/alice/done"):
        assert "secret-model" not in client.get(url).text
    assert "hidden (blinded)" in client.get("/rate/alice/0").text
    assert client.get("/export.csv").status_code == 403  # the export would name the models


def test_images_are_served_and_converted(client_for) -> None:
    app, client = client_for()
    items = app.config["REVIEW_ITEMS"]
    png = client.get(f"/image/{items[0].token}")
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    jpg = client.get(f"/image/{items[1].token}")
    assert jpg.mimetype == "image/jpeg" and jpg.data[:2] == b"\xff\xd8"
    bmp = client.get(f"/image/{items[2].token}")  # neither PNG nor JPG: converted on the fly
    assert bmp.status_code == 200 and bmp.mimetype == "image/png" and bmp.data[:4] == b"\x89PNG"
    assert client.get("/image/0123456789abcdef0123").status_code == 404


def test_dicom_images_are_converted_to_png(tmp_path: Path) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    from rarl.data import images

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "CT", 8, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = (np.arange(64, dtype=np.uint16) * 100).reshape(8, 8).tobytes()
    ds.save_as(tmp_path / "scan.dcm", enforce_file_format=True)
    assert images.load_image(str(tmp_path / "scan.dcm")).size == (8, 8)

    predictions = make_predictions(tmp_path / "run")
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    rows[0]["image"] = str(tmp_path / "scan.dcm")
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    app = create_app(predictions, tmp_path / "r.sqlite")
    response = app.test_client().get(f"/image/{app.config['REVIEW_ITEMS'][0].token}")
    assert response.status_code == 200 and response.data[:4] == b"\x89PNG"


def test_missing_image_is_shown_not_fatal(tmp_path: Path) -> None:
    predictions = make_predictions(tmp_path / "run")
    (tmp_path / "run" / "images" / "chest.png").unlink()
    app = create_app(predictions, tmp_path / "r.sqlite")
    page = app.test_client().get("/rate/alice/0").text
    assert "Image not found" in page and "images/chest.png" in page


def test_export_links(client_for, tmp_path: Path) -> None:
    _, client = client_for()
    data = {**_form(client.get("/rate/alice/0").text), "reasoning_score": "0", "prediction_score": "1"}
    client.post("/rate/alice/0", data=data)
    csv_text = client.get("/export.csv").text
    assert csv_text.splitlines()[0].startswith("rater,model,prompt,item_key,output_fp")
    fingerprint = load_items(make_predictions(tmp_path / "again"))[0].record.output_fingerprint
    assert csv_text.splitlines()[1].startswith(
        f"alice,qwen2vl-2b-rarl,reasoning,synthetic/test/1,{fingerprint},synthetic,test,1,"
    )
    jsonl = [json.loads(line) for line in client.get("/export.jsonl").text.splitlines()]
    assert [(r["rater"], r["reasoning_score"], r["prediction_score"]) for r in jsonl] == [("alice", 0, 1)]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda rows: rows[1].pop("pred_answer"), "row 2, field 'pred_answer': missing"),
        (lambda rows: rows[2].update(question=["a"]), "row 3, field 'question': expected text"),
        (lambda rows: rows.append(dict(rows[0])), "row 4, field 'id': duplicate item synthetic/test/1"),
        (lambda rows: rows[0].update(choices="A, B"), "row 1, field 'choices': expected a list"),
        (lambda rows: rows[0].update(image=3), "row 1, field 'image': expected text"),
    ],
)
def test_bad_prediction_files_name_row_and_field(tmp_path: Path, mutate, message: str) -> None:
    predictions = make_predictions(tmp_path)
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    mutate(rows)
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(DataError, match=re.escape(message)):
        load_items(predictions)


def test_empty_or_missing_predictions(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UserError, match="no predictions"):
        load_items(tmp_path / "empty.jsonl")
    with pytest.raises(UserError, match="not found"):
        load_items(tmp_path / "absent.jsonl")


def test_server_binds_loopback_by_default(tmp_path: Path) -> None:
    app = create_app(make_predictions(tmp_path), tmp_path / "r.sqlite")
    server = create_server(app, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1" and server.server_port > 0
        with pytest.raises(UserError, match="cannot listen"):
            create_server(app, port=server.server_port)
    finally:
        server.server_close()
    record = load_items(make_predictions(tmp_path / "tokens"))[0].record
    other_model = dataclasses.replace(record, model="m2")
    other_text = dataclasses.replace(record, raw_output=record.raw_output + " ")
    tokens = {item_token(r) for r in (record, other_model, other_text)} | {item_token(record, "salt")}
    assert len(tokens) == 4


def test_tokens_are_secret_per_database_and_stable_across_restarts(tmp_path: Path) -> None:
    predictions = make_predictions(tmp_path / "run")
    first = create_app(predictions, tmp_path / "a.sqlite").config["REVIEW_ITEMS"]
    restarted = create_app(predictions, tmp_path / "a.sqlite").config["REVIEW_ITEMS"]
    other_db = create_app(predictions, tmp_path / "b.sqlite").config["REVIEW_ITEMS"]
    assert [i.token for i in first] == [i.token for i in restarted]
    assert {i.token for i in first}.isdisjoint(i.token for i in other_db)
    # a rater who knows the model names cannot recompute the tokens
    assert item_token(first[0].record) != first[0].token


def test_cli_serve_answers_on_loopback(tmp_path: Path) -> None:
    predictions = make_predictions(tmp_path / "run")
    db = tmp_path / "ratings.sqlite"
    command = [sys.executable, "-m", "rarl.cli", "review", "serve", "--predictions", str(predictions)]
    proc = subprocess.Popen(
        [*command, "--db", str(db), "--port", "0", "--blind"],
        stdout=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an
        # ignored SIGINT: give the server the default Ctrl+C however the test suite itself was launched.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        url = None
        while url is None:
            match = re.search(r"open (http://127\.0\.0\.1:\d+/)", lines.get(timeout=60))
            url = match and match.group(1)
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
        assert "3 predictions to rate" in page and "blinded" in page
        assert db.exists()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0  # Ctrl+C is a clean stop


def test_cli_serve_bad_predictions_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"id": "1"}\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rarl.cli",
            "review",
            "serve",
            "--predictions",
            str(tmp_path / "p.jsonl"),
            "--db",
            str(tmp_path / "r.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "row 1, field 'dataset': missing" in result.stderr.strip()
    assert not (tmp_path / "r.sqlite").exists()  # no empty database left behind for a bad file
