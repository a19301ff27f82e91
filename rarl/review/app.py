"""The rating web page (Flask): one item at a time, keyboard-driven, stored in :mod:`rarl.review.store`.

Why these choices:
- Flask + Jinja autoescape: every string from a predictions file is model output or dataset text and is
  rendered as text, never markup (a prediction containing ``<script>`` shows as text). A strict
  Content-Security-Policy (scripts only from our own static file) is a second line of defence.
- Post/Redirect/Get: a saved rating redirects to the next item, so reloading never re-posts; a re-post
  anyway (double click, browser retry) is an idempotent upsert of the same row.
- Each form carries the item's token; if the item order changed under the rater (server restarted with
  another file or seed) the save is refused instead of being attached to the wrong item.
- Blind mode hides the model name and shuffles the order per rater (seeded by ``seed`` and the rater
  name), so two raters do not see the same sequence and neither knows which model answered. Images and
  forms are addressed by an opaque token, not by file position, which could betray the model.
- Local by default: :func:`serve` binds 127.0.0.1; POSTs from another origin are refused, so a web page
  open in the same browser cannot submit ratings behind the rater's back.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, abort, redirect, render_template, request, send_file, url_for
from werkzeug.serving import BaseWSGIServer, make_server

from rarl.errors import UserError
from rarl.review.store import RatingStore, export_text, normalize_rater
from rarl.schema.predictions import read_predictions
from rarl.schema.records import PredictionRecord

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]"}  # as they appear in a Host header
DIRECT_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class ReviewItem:
    """One prediction to rate, with an opaque token and its resolved image path (None when absent)."""

    record: PredictionRecord
    token: str
    image_path: Path | None
    image_label: str | None  # the path as written in the predictions file, for "image not found"


def item_token(record: PredictionRecord, salt: str = "") -> str:
    """Stable opaque id of one rated output (``record.output_id``): safe to put in URLs; with a secret
    ``salt`` it reveals neither the model, the prompt nor the position in the file."""
    text = "\0".join((salt, *record.output_id))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _host_name(host_header: str) -> str:
    """The Host header without its port (``[::1]:8765`` → ``[::1]``), lower-cased."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if ":" in host else host


def _resolve_image(raw: str | None, base_dir: Path) -> Path | None:
    """Image paths may be absolute, relative to the working directory or to the predictions file."""
    if not raw:
        return None
    candidate = Path(raw).expanduser()
    for path in (candidate, base_dir / candidate) if not candidate.is_absolute() else (candidate,):
        if path.is_file():
            return path.resolve()
    return None


def load_items(predictions_path: str | Path, salt: str = "") -> list[ReviewItem]:
    """Read a predictions.jsonl into review items; bad rows raise :class:`DataError` naming line and field.

    The file may hold several runs (blind comparison: two models, or one model with two prompts); each
    (model, prompt, item) must occur once.
    """
    path = Path(predictions_path)
    records = read_predictions(path, one_model=False, tolerate_truncated_tail=False)
    if not records:
        raise UserError(f"{path}: no predictions to review")
    return [
        ReviewItem(
            record=record,
            token=item_token(record, salt),
            image_path=_resolve_image(record.image, path.parent),
            image_label=record.image,
        )
        for record in records
    ]


@lru_cache(maxsize=64)
def _png_bytes(path: str, mtime: float) -> bytes:
    """Convert a non-PNG/JPG image (DICOM, TIFF, BMP, …) to PNG, once per file version (``mtime``)."""
    from rarl.data.images import load_image  # DICOM decoding and windowing live with the data loaders

    buffer = io.BytesIO()
    load_image(path).save(buffer, format="PNG")
    return buffer.getvalue()


def create_app(
    predictions: str | Path,
    db_path: str | Path,
    *,
    blind: bool = False,
    seed: int = 0,
    host: str = "127.0.0.1",
) -> Flask:
    """Build the Flask app for one predictions file and one ratings database.

    ``host`` is the address the server will bind; when it is a loopback address, requests must also name
    a loopback host, which defeats DNS rebinding (a web page whose domain resolves to 127.0.0.1 would
    otherwise be "same origin" with this server and could read images and post ratings).
    """
    local_only = host in LOOPBACK_HOSTS
    load_items(predictions)  # validate the file before creating a database for it
    store = RatingStore(db_path)
    items = load_items(predictions, salt=store.token_salt())
    by_token = {item.token: item for item in items}
    store.register_items(item.record for item in items)

    app = Flask(__name__)
    app.config.update(
        REVIEW_ITEMS=items,
        REVIEW_STORE=store,
        REVIEW_BLIND=blind,
        REVIEW_SEED=seed,
        MAX_CONTENT_LENGTH=64_000,
    )

    def order_for(rater: str) -> list[ReviewItem]:
        if not blind:
            return items
        shuffled = list(items)
        random.Random(f"{seed}\0{rater}").shuffle(shuffled)
        return shuffled

    def rater_or_400(name: str) -> str:
        try:
            cleaned = normalize_rater(name)
        except UserError as exc:
            abort(400, description=str(exc))
        return cleaned

    def first_unrated(order: list[ReviewItem], done: dict[tuple[str, str], Any]) -> int | None:
        for pos, item in enumerate(order):
            if item.record.output_id not in done:
                return pos
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        # not "no-referrer": Chrome would then send "Origin: null" on our own form posts
        response.headers["Referrer-Policy"] = "same-origin"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.before_request
    def loopback_host_only() -> None:
        if local_only and _host_name(request.host) not in LOOPBACK_NAMES:
            abort(
                403, description=f"host {request.host!r} refused: open the page at http://127.0.0.1:<port>/"
            )

    @app.before_request
    def same_origin_posts_only() -> None:
        if request.method != "POST":
            return
        origin = request.headers.get("Origin")
        # "null" is what sandboxed frames and file:// pages send: never this page itself
        if origin and (origin == "null" or urlsplit(origin).netloc != request.host):
            abort(403, description="cross-origin form submission refused")
        if request.headers.get("Sec-Fetch-Site") == "cross-site":
            abort(403, description="cross-site form submission refused")

    @app.get("/")
    def index(error: str | None = None, name: str = "", status: int = 200) -> tuple[str, int]:
        html = render_template(
            "index.html", raters=store.raters(), total=len(items), blind=blind, error=error, name=name
        )
        return html, status

    @app.post("/")
    def start() -> Any:
        name = request.form.get("rater", "")
        try:
            rater = normalize_rater(name)
        except UserError as exc:
            return index(error=str(exc), name=name, status=400)
        return redirect(url_for("resume", rater=rater), code=303)

    @app.get("/rate/<rater>/")
    def resume(rater: str) -> Response:
        rater = rater_or_400(rater)
        pos = first_unrated(order_for(rater), store.rated_by(rater))
        if pos is None:
            return redirect(url_for("done", rater=rater), code=303)
        return redirect(url_for("rate", rater=rater, pos=pos), code=303)

    @app.get("/rate/<rater>/done")
    def done(rater: str) -> str:
        rater = rater_or_400(rater)
        rated = store.rated_by(rater)
        n_done = sum(it.record.output_id in rated for it in items)
        return render_template("done.html", rater=rater, n_done=n_done, total=len(items), blind=blind)

    @app.get("/rate/<rater>/<int:pos>")
    def rate(rater: str, pos: int, error: str | None = None, status: int = 200) -> tuple[str, int]:
        rater = rater_or_400(rater)
        order = order_for(rater)
        if not 0 <= pos < len(order):
            abort(404, description=f"no item {pos + 1}; there are {len(order)}")
        item = order[pos]
        rated = store.rated_by(rater)
        existing = rated.get(item.record.output_id)
        html = render_template(
            "item.html",
            rater=rater,
            pos=pos,
            total=len(order),
            n_done=sum(it.record.output_id in rated for it in items),
            item=item,
            record=item.record,
            existing=existing,
            blind=blind,
            error=error,
            prev_url=url_for("rate", rater=rater, pos=pos - 1) if pos > 0 else None,
            next_url=url_for("rate", rater=rater, pos=pos + 1) if pos + 1 < len(order) else None,
        )
        return html, status

    @app.post("/rate/<rater>/<int:pos>")
    def save(rater: str, pos: int) -> Any:
        rater = rater_or_400(rater)
        order = order_for(rater)
        if not 0 <= pos < len(order):
            abort(404, description=f"no item {pos + 1}; there are {len(order)}")
        item = order[pos]
        if request.form.get("token") != item.token:
            abort(409, description="this page is out of date (the item list changed); reload and rate again")
        try:
            store.save(
                rater,
                item.record,
                request.form.get("reasoning_score"),
                request.form.get("prediction_score"),
                request.form.get("comment", ""),
                blind=blind,
            )
        except UserError as exc:
            return rate(rater, pos, error=str(exc), status=400)
        if pos + 1 < len(order):
            return redirect(url_for("rate", rater=rater, pos=pos + 1), code=303)
        return redirect(url_for("resume", rater=rater), code=303)

    @app.get("/image/<token>")
    def image(token: str) -> Response:
        item = by_token.get(token)
        if item is None or item.image_path is None:
            abort(404, description="image not found")
        path = item.image_path
        mimetype = DIRECT_IMAGE_TYPES.get(path.suffix.lower())
        if mimetype:
            return send_file(path, mimetype=mimetype, max_age=3600)
        try:
            data = _png_bytes(str(path), path.stat().st_mtime)
        except Exception as exc:  # unreadable or unsupported image: say so instead of a 500
            logger.warning("cannot convert %s to PNG: %s", path, exc)
            abort(415, description=f"cannot display {path.name}: {exc}")
        return send_file(io.BytesIO(data), mimetype="image/png", max_age=3600)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/export.<fmt>")
    def export(fmt: str) -> Response:
        if fmt not in ("csv", "jsonl"):
            abort(404)
        if blind:  # the export names the model of every item: not for raters of a blinded study
            abort(403, description="export is disabled in blind mode; use `rarl review export`")
        text = export_text(store.rows(), fmt)
        mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return Response(
            text,
            mimetype=mimetype,
            headers={"Content-Disposition": f"attachment; filename=ratings.{fmt}"},
        )

    return app


def create_server(app: Flask, host: str = "127.0.0.1", port: int = 8765) -> BaseWSGIServer:
    """A threaded WSGI server for ``app``; ``port=0`` picks a free port (see ``server.server_port``).

    Raises :class:`UserError` when the address is taken, and warns when binding beyond loopback because
    the page shows patient images and ratings to anyone who can reach the port.
    """
    if host not in LOOPBACK_HOSTS:
        logger.warning(
            "binding to %s: anyone who can reach this port sees the images and can submit ratings", host
        )
    try:
        return make_server(host, port, app, threaded=True)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    except SystemExit:  # werkzeug prints the reason (e.g. port in use) and exits instead of raising
        raise UserError(f"cannot listen on {host}:{port} (see the message above)") from None
