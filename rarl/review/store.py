"""Human ratings in SQLite: one row per rater and rated output, safe against crashes and double submits.

Why SQLite: a radiologist rates hundreds of items over several sittings, often on a laptop that sleeps or
a browser that is closed mid-session. Every rating is committed in its own transaction before the page
moves on (WAL journal, ``synchronous=FULL``), so a crash loses nothing already saved. A ``UNIQUE`` constraint
plus ``INSERT … ON CONFLICT DO UPDATE`` makes a double submit (double click, browser re-POST) update the
same row instead of creating a second one; every submission is also appended to an ``events`` table so
a changed mind can be audited. A rated output is identified by ``PredictionRecord.output_id`` (model,
prompt, item key and the fingerprint of the exact text shown), because one predictions file may hold
several runs' outputs for the same sample (blind comparisons), and a rating must never pass to another
run's output or to a regenerated one.

``items`` keeps a copy of what the rater saw (question, answers) so an export is readable on its own,
without the predictions file.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import sqlite3
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rarl.errors import UserError
from rarl.io import atomic_write_text, json_line
from rarl.schema.records import PredictionRecord

SCHEMA_VERSION = 2

# Version 2 keys a rating by the run (model and prompt) and the exact output rated (its fingerprint);
# version 1 keyed it by (model, item) alone, so a second run of a model inherited the first run's ratings.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    item_key TEXT NOT NULL,
    output_fp TEXT NOT NULL,
    dataset TEXT NOT NULL,
    split TEXT NOT NULL,
    item_id TEXT NOT NULL,
    question TEXT NOT NULL,
    reference_answer TEXT NOT NULL,
    pred_answer TEXT NOT NULL,
    PRIMARY KEY (model, prompt, item_key, output_fp)
);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    item_key TEXT NOT NULL,
    output_fp TEXT NOT NULL,
    reasoning_score INTEGER NOT NULL CHECK (reasoning_score IN (0, 1)),
    prediction_score INTEGER NOT NULL CHECK (prediction_score IN (0, 1)),
    comment TEXT NOT NULL DEFAULT '',
    blind INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (rater, model, prompt, item_key, output_fp)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    item_key TEXT NOT NULL,
    output_fp TEXT NOT NULL DEFAULT '',
    reasoning_score INTEGER NOT NULL,
    prediction_score INTEGER NOT NULL,
    comment TEXT NOT NULL,
    at TEXT NOT NULL
);
"""

# Version 1 -> 2: the old rows are kept with an empty prompt and fingerprint ("legacy"). Which output they
# rated is unknown, so the report never joins them to a run (it says how many it left out); exports keep them.
_MIGRATE_1_TO_2 = (
    """
ALTER TABLE items RENAME TO items_v1;
ALTER TABLE ratings RENAME TO ratings_v1;
ALTER TABLE events ADD COLUMN prompt TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN output_fp TEXT NOT NULL DEFAULT '';
"""
    + _SCHEMA
    + """
INSERT INTO items SELECT model, '', item_key, '', dataset, split, item_id, question, reference_answer,
    pred_answer FROM items_v1;
INSERT INTO ratings SELECT rater, model, '', item_key, '', reasoning_score, prediction_score, comment, blind,
    created_at, updated_at FROM ratings_v1;
DROP TABLE items_v1;
DROP TABLE ratings_v1;
UPDATE meta SET value = '2' WHERE name = 'schema_version';
"""
)

EXPORT_FIELDS = [
    "rater",
    "model",
    "prompt",
    "item_key",
    "output_fp",
    "dataset",
    "split",
    "item_id",
    "question",
    "reference_answer",
    "pred_answer",
    "reasoning_score",
    "prediction_score",
    "comment",
    "blind",
    "created_at",
    "updated_at",
]

_SELECT_ONE = "SELECT * FROM ratings WHERE rater=? AND model=? AND prompt=? AND item_key=? AND output_fp=?"

_RATER_RE = re.compile(r"^[\w][\w .@-]{0,63}$")


def normalize_rater(name: str) -> str:
    """Return a cleaned rater name, or raise :class:`UserError`.

    Names go into URLs and exports, so they are restricted to letters, digits, spaces and ``._@-``
    (at most 64 characters); surrounding and repeated whitespace is collapsed.
    """
    # NFC: "Müller" typed on two keyboards (composed vs combining umlaut) is one rater, not two
    cleaned = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not cleaned or not _RATER_RE.match(cleaned):
        raise UserError(
            f"rater name {name!r} is not allowed: use 1-64 letters, digits, spaces or ._@- "
            "(starting with a letter or digit)"
        )
    return cleaned


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _score(value: Any, field: str) -> int:
    """Accept 0/1 (as int, bool or string); anything else is a user error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    raise UserError(f"{field} must be 0 or 1, got {value!r}")


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The version recorded in an existing database (None for a new, empty one)."""
    has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
    return int(row[0]) if row else None


class RatingStore:
    """The ratings database. Cheap to construct; opens one short-lived connection per operation.

    A connection per operation (rather than one shared connection) keeps the store safe to use from the
    threaded web server without locks of our own: SQLite serialises the writers.
    """

    def __init__(self, db_path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(db_path)
        if not create and not self.path.exists():
            raise UserError(f"{self.path}: ratings database not found")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                # WAL must be set outside a transaction; it persists in the file for later connections.
                conn.execute("PRAGMA journal_mode=WAL")
                version = _schema_version(conn)
                if version == 1:
                    conn.executescript("BEGIN IMMEDIATE;" + _MIGRATE_1_TO_2 + "COMMIT;")
                elif version is not None and version != SCHEMA_VERSION:
                    raise UserError(
                        f"{self.path}: ratings database of schema version {version}; this rarl reads "
                        f"version {SCHEMA_VERSION} (upgrade rarl)"
                    )
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + _SCHEMA
                    + "INSERT OR IGNORE INTO meta(name, value)"
                    + f" VALUES ('schema_version', '{SCHEMA_VERSION}');"
                    + "COMMIT;"
                )
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.path}: not a usable ratings database ({exc})") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            # FULL: a committed rating survives power loss, not only a process crash.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def token_salt(self) -> str:
        """A random secret kept in the database, created on first use.

        The page addresses items by ``hash(salt, model, key)``; without a secret a rater in a blinded study
        could hash the candidate model names and tell which model answered. Stored (not per process) so
        tokens in pages left open survive a server restart.
        """
        with self._connect() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO meta(name, value) VALUES ('token_salt', ?)", (secrets.token_hex(16),)
            )
            return conn.execute("SELECT value FROM meta WHERE name='token_salt'").fetchone()["value"]

    # -- items ---------------------------------------------------------------------------------------
    def register_items(self, records: Iterable[PredictionRecord]) -> None:
        """Store (or refresh) what each item showed, so exports need no predictions file."""
        rows = [
            (
                r.model,
                r.prompt,
                r.key,
                r.output_fingerprint,
                r.dataset,
                r.split,
                r.id,
                r.question,
                r.reference_answer,
                r.pred_answer,
            )
            for r in records
        ]
        with self._connect() as conn:
            conn.executemany(
                "INSERT INTO items(model, prompt, item_key, output_fp, dataset, split, item_id, question,"
                " reference_answer, pred_answer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(model, prompt, item_key, output_fp) DO UPDATE SET dataset=excluded.dataset,"
                " split=excluded.split,"
                " item_id=excluded.item_id, question=excluded.question,"
                " reference_answer=excluded.reference_answer, pred_answer=excluded.pred_answer",
                rows,
            )

    # -- ratings -------------------------------------------------------------------------------------
    def save(
        self,
        rater: str,
        record: PredictionRecord,
        reasoning_score: Any,
        prediction_score: Any,
        comment: str = "",
        *,
        blind: bool = False,
    ) -> dict[str, Any]:
        """Insert or update ``rater``'s rating of the output ``record`` shows; returns the stored row.

        The rating is keyed by :attr:`PredictionRecord.output_id` (run and exact output), so it never
        attaches to another run's or a regenerated output of the same item. Idempotent: saving the same
        values twice leaves one row (``created_at`` kept, ``updated_at`` refreshed). Returns only after the
        transaction is committed.
        """
        rater = normalize_rater(rater)
        r_score = _score(reasoning_score, "reasoning_score")
        p_score = _score(prediction_score, "prediction_score")
        comment = (comment or "").strip()
        if len(comment) > 5000:
            raise UserError("comment is longer than 5000 characters")
        model, prompt, key, output_fp = record.output_id
        ident = (rater, model, prompt, key, output_fp)
        now = _now()
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO ratings(rater, model, prompt, item_key, output_fp, reasoning_score,"
                " prediction_score, comment, blind, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(rater, model, prompt, item_key, output_fp) DO UPDATE SET"
                " reasoning_score=excluded.reasoning_score, prediction_score=excluded.prediction_score,"
                " comment=excluded.comment, blind=excluded.blind, updated_at=excluded.updated_at",
                (*ident, r_score, p_score, comment, int(blind), now, now),
            )
            conn.execute(
                "INSERT INTO events(rater, model, prompt, item_key, output_fp, reasoning_score,"
                " prediction_score, comment, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*ident, r_score, p_score, comment, now),
            )
            row = conn.execute(_SELECT_ONE, ident).fetchone()
        return dict(row)

    def get(self, rater: str, record: PredictionRecord) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(_SELECT_ONE, (normalize_rater(rater), *record.output_id)).fetchone()
        return dict(row) if row else None

    def rated_by(self, rater: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
        """All of one rater's ratings keyed by :attr:`PredictionRecord.output_id`."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM ratings WHERE rater=?", (rater,)).fetchall()
        return {(row["model"], row["prompt"], row["item_key"], row["output_fp"]): dict(row) for row in rows}

    def raters(self) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute("SELECT DISTINCT rater FROM ratings ORDER BY rater").fetchall()
        return [row["rater"] for row in rows]

    def rows(self) -> list[dict[str, Any]]:
        """Every rating joined with its item text, in a stable order (rater, model, item)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT r.rater, r.model, r.prompt, r.item_key, r.output_fp,"
                " COALESCE(i.dataset, '') AS dataset, COALESCE(i.split, '') AS split,"
                " COALESCE(i.item_id, '') AS item_id, COALESCE(i.question, '') AS question,"
                " COALESCE(i.reference_answer, '') AS reference_answer,"
                " COALESCE(i.pred_answer, '') AS pred_answer,"
                " r.reasoning_score, r.prediction_score, r.comment, r.blind, r.created_at, r.updated_at"
                " FROM ratings r LEFT JOIN items i ON i.model = r.model AND i.prompt = r.prompt"
                " AND i.item_key = r.item_key AND i.output_fp = r.output_fp"
                " ORDER BY r.rater, r.model, r.prompt, r.item_key, r.output_fp"
            ).fetchall()
        return [dict(row) for row in rows]


# -- module-level API used by `rarl review export` and `rarl report` ------------------------------------
def load_ratings(db_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every individual rating (one dict per rater and item); for per-rater agreement analyses."""
    return RatingStore(db_path, create=False).rows()


# PredictionRecord.output_id: model, prompt, item key, output fingerprint
OutputId = tuple[str, str, str, str]


def human_scores_by_output(db_path: str | os.PathLike[str]) -> dict[OutputId, dict[str, float]]:
    """``{output_id: {"reasoning_score", "prediction_score", "n_raters"}}``: mean ratings per rated output
    (see :func:`summarize_ratings`)."""
    return summarize_ratings(load_ratings(db_path))[0]


def summarize_ratings(rows: Iterable[dict[str, Any]]) -> tuple[dict[OutputId, dict[str, float]], int]:
    """Mean ratings per rated output, and how many ratings name no output.

    Ratings from a version-1 database (no prompt, no fingerprint) are counted, not included: which output
    they rated is unknown, so they are never joined to a run.
    """
    sums: dict[OutputId, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    legacy = 0
    for row in rows:
        if not row["output_fp"]:
            legacy += 1
            continue
        acc = sums[(row["model"], row["prompt"], row["item_key"], row["output_fp"])]
        acc[0] += row["reasoning_score"]
        acc[1] += row["prediction_score"]
        acc[2] += 1
    scores = {
        ident: {"reasoning_score": r_sum / n, "prediction_score": p_sum / n, "n_raters": n}
        for ident, (r_sum, p_sum, n) in sums.items()
    }
    return scores, legacy


def _csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas: a model answer or comment starting with ``=`` (or ``+ - @``)
    would otherwise be executed by Excel/LibreOffice when a clinician opens the export (CSV injection).
    Numbers are left alone; the JSONL export keeps text verbatim."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def export_text(rows: list[dict[str, Any]], fmt: str) -> str:
    """Render rating rows as CSV (spreadsheet-safe) or JSONL text."""
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _csv_safe(v) for k, v in row.items()} for row in rows)
        return buffer.getvalue()
    if fmt == "jsonl":
        return "".join(json_line({k: row[k] for k in EXPORT_FIELDS}) + "\n" for row in rows)
    raise UserError(f"unknown export format {fmt!r}; use csv or jsonl")


def export_ratings(db_path: str | os.PathLike[str], fmt: str, out: str | os.PathLike[str]) -> int:
    """Write every rating to ``out`` as CSV or JSONL (atomically); returns the number of rows."""
    rows = load_ratings(db_path)
    atomic_write_text(out, export_text(rows, fmt))
    return len(rows)
