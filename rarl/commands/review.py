"""`rarl review`: a local web page where clinicians rate reasoning and answers, and the export of ratings.

``rarl review serve --predictions predictions.jsonl --db ratings.sqlite`` serves the page on
http://127.0.0.1:8765 (loopback only unless ``--host`` says otherwise); ``rarl review export`` writes the
ratings as CSV or JSONL. Flask is imported only inside ``run`` so ``rarl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

HELP = "Human evaluation web page for clinicians (serve, export)"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    serve = sub.add_parser("serve", help="serve the rating page", description="Serve the rating page.")
    serve.add_argument("--predictions", required=True, help="predictions.jsonl written by `rarl eval`")
    serve.add_argument("--db", required=True, help="SQLite file for the ratings (created if absent)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    serve.add_argument(
        "--blind", action="store_true", help="hide model names and shuffle the order per rater"
    )
    serve.add_argument("--seed", type=int, default=0, help="seed of the blinded order (default 0)")

    export = sub.add_parser("export", help="export ratings", description="Export ratings as CSV or JSONL.")
    export.add_argument("--db", required=True, help="the ratings SQLite file")
    export.add_argument("--format", choices=("csv", "jsonl"), default=None, help="default: from --out suffix")
    export.add_argument("--out", required=True, help="output file")


def _serve(args: argparse.Namespace) -> int:
    from rarl.errors import UserError
    from rarl.review.app import create_app, create_server

    if not 0 <= args.port <= 65535:  # the OS would silently map an out-of-range port to another one
        raise UserError(f"--port {args.port}: out of range (1-65535, or 0 for any free port)")
    app = create_app(args.predictions, args.db, blind=args.blind, seed=args.seed, host=args.host)
    server = create_server(app, args.host, args.port)
    host = f"[{args.host}]" if ":" in args.host else args.host
    n_items = len(app.config["REVIEW_ITEMS"])
    print(f"rarl review: {n_items} items; ratings in {args.db}", flush=True)
    print(f"rarl review: open http://{host}:{server.server_port}/  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()  # werkzeug returns from here on Ctrl+C
    finally:
        server.server_close()
    print(f"rarl review: stopped; every saved rating is in {args.db}", flush=True)
    return 0


def _export(args: argparse.Namespace) -> int:
    from rarl.errors import UserError
    from rarl.review.store import export_ratings

    if not str(args.out).strip():
        raise UserError("--out: empty; name the file to write (e.g. ratings.csv)")
    if Path(args.out).is_dir():
        raise UserError(f"{args.out}: --out names a directory; name the file to write (e.g. ratings.csv)")
    fmt = args.format or Path(args.out).suffix.lstrip(".").lower()
    if fmt not in ("csv", "jsonl"):
        raise UserError(f"cannot tell the format from {args.out!r}; pass --format csv or --format jsonl")
    n_rows = export_ratings(args.db, fmt, args.out)
    print(f"rarl review: wrote {n_rows} ratings to {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.review_command == "serve":
        return _serve(args)
    return _export(args)
