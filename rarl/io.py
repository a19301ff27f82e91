"""Small file helpers shared by every module that writes results.

Why: results of long runs (predictions, judge caches, reports) must never be left half-written. All
whole-file writes go through :func:`atomic_write_text` (write to a temp file in the same directory, fsync,
rename), and append-only logs go through :func:`append_jsonl` which flushes every line so an interrupted
run loses at most the line being written.

The read side has its mirror: weights and settings files written by other programs (the trainer, PEFT,
a download) may exist with the right name yet be cut short; :func:`weights_file_problem` and
:func:`json_file_problem` say so in one line before a loader fails on them deep in a traceback.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rarl.errors import DataError, UserError


def _current_umask() -> int:
    """The process umask (read once: setting it is the only portable way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (readers see the old file or the new one, never a mix).

    The file gets the mode a plain ``open(path, "w")`` would give it (0644 under the usual umask, or the
    replaced file's mode), not the 0600 of the temporary file, so results stay readable by colleagues.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write ``data`` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def append_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Append records to a JSONL file, flushing after each line so a crash loses at most one line."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            handle.flush()


def read_text(path: str | os.PathLike[str]) -> str:
    """A text file's content; bytes that are not UTF-8 raise :class:`DataError` naming the file."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def has_torn_tail(path: str | os.PathLike[str]) -> bool:
    """True when a non-empty file's last line lacks its newline: what an interrupted append leaves.

    Appending writers (predictions, the judge cache) rewrite such a file from what they could read, so the
    next append starts on a clean line instead of gluing onto half a record.
    """
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            return False
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def read_jsonl(
    path: str | os.PathLike[str], *, tolerate_truncated_tail: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file.

    A malformed line raises :class:`DataError` naming the line, except a truncated *last* line when
    ``tolerate_truncated_tail`` is set: that is what an interrupted writer leaves behind, and resumable
    readers (predictions, caches) should redo that item instead of refusing to start.
    """
    for _, record in read_jsonl_numbered(path, tolerate_truncated_tail=tolerate_truncated_tail):
        yield record


def read_jsonl_numbered(
    path: str | os.PathLike[str], *, tolerate_truncated_tail: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Like :func:`read_jsonl`, with each object's 1-based line number (blank lines are skipped but
    counted), so validators can name the line a user sees in an editor."""
    source = Path(path)
    if not source.exists():
        raise UserError(f"{source}: file not found")
    lines = read_text(source).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if tolerate_truncated_tail and number == len(lines):
                return
            raise DataError(str(source), number, None, f"invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(str(source), number, None, "expected a JSON object")
        yield number, record


# --------------------------------------------------------------------------------------------------
# files written by other programs: whole or not


def safetensors_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a ``.safetensors`` file is not whole (None when its header and its length agree).

    Why parse the header ourselves: a file cut short by a crash or a full disk still exists and has the
    right name, and loaders fail on it only later, deep in a traceback. The format is an 8-byte
    little-endian header length, a JSON header giving every tensor's ``data_offsets`` into the data that
    follows, then that data; a whole file ends exactly where the last tensor does.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return f"is truncated ({size} bytes, shorter than the header length)"
            length = int.from_bytes(head, "little")
            if length > size - 8:
                return f"is truncated ({size} bytes; the header alone needs {8 + length})"
            header = json.loads(handle.read(length).decode("utf-8"))
    except OSError as exc:
        return f"is unreadable ({exc.strerror or exc})"
    except (ValueError, UnicodeDecodeError):
        return "has an unreadable header (not safetensors, or damaged)"
    if not isinstance(header, dict):
        return "has an unreadable header (not safetensors, or damaged)"
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            return f"has an unreadable header (tensor {name!r} has no valid data_offsets)"
        end = max(end, offsets[1])
    expected = 8 + length + end
    if size < expected:
        return f"is truncated ({size} bytes; its tensors need {expected})"
    if size > expected:
        return f"is damaged ({size - expected} bytes after the last tensor)"
    return None


def json_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a JSON settings file (``config.json``, ``adapter_config.json``, ...) is unusable, or None."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        return f"is unreadable ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    except json.JSONDecodeError as exc:
        if not exc.doc.strip():
            return "is empty"
        return f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if not isinstance(data, dict):
        return "is not a JSON object"
    return None


def weights_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a weights file (safetensors, a sharded model's index, a ``torch.save`` file) is not whole."""
    name = Path(path).name
    if name.endswith(".index.json"):
        return _shards_problem(Path(path))
    if name.endswith(".safetensors"):
        return safetensors_problem(path)
    return torch_file_problem(path)


def _shards_problem(index: Path) -> str | None:
    """A sharded model's index must parse and every shard it names must be whole."""
    reason = json_file_problem(index)
    if reason is not None:
        return reason
    weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    if not isinstance(weight_map, dict):
        return "has no weight_map"
    for shard in sorted(set(map(str, weight_map.values()))):
        path = index.parent / shard
        if not path.is_file():
            return f"names {shard}, which is missing"
        reason = safetensors_problem(path) if shard.endswith(".safetensors") else torch_file_problem(path)
        if reason is not None:
            return f"names {shard}, which {reason}"
    return None


def torch_file_problem(path: str | os.PathLike[str], *, load: bool = False) -> str | None:
    """Why a ``torch.save`` file is not whole, or None.

    ``torch.save`` writes a zip archive whose directory sits at the end, so a file cut short has none (or
    one that points past the end). With ``load`` the file is also loaded the way the trainer loads it
    (``weights_only``, memory-mapped: a large optimizer state costs its pickle, not its size in RAM).
    """
    import zipfile

    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        members = None
    if not members or any(m.header_offset + m.compress_size > size for m in members):
        return f"is truncated or damaged ({size} bytes, not a whole torch.save archive)"
    if load:
        import torch

        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # any failure to load is the answer asked for, named in one line
            text = str(exc).strip()
            return f"does not load ({text.splitlines()[0] if text else type(exc).__name__})"
    return None
