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

import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rarl.errors import DataError, UserError


def _current_umask() -> int:
    """The process umask (read once: setting it is the only portable way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})

# Write failures that are the user's to fix (where the output goes, how full the disk is), not bugs.
_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on device; free some space and rerun",
    getattr(errno, "EDQUOT", errno.ENOSPC): "disk quota exceeded; free some space and rerun",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a directory, expected a file name",
}


def write_error(path: str | os.PathLike[str], exc: OSError) -> UserError | None:
    """The one-line error for a write that failed for a reason the user must fix, else None (a bug).

    Why a user error: a full disk or a read-only output path is the user's to fix, and the writers below
    leave nothing half-written (a temporary file is removed, a torn appended line cut off), so a rerun
    after fixing it resumes.
    """
    problem = _WRITE_PROBLEMS.get(exc.errno or -1)
    return UserError(f"{path}: cannot write: {problem}") if problem else None


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (itself included) when it is not a directory."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def check_output_directory(path: str | os.PathLike[str], what: str) -> Path:
    """Refuse, before any work, an output directory that is empty or cannot be one (it, or a folder above
    it, is a file); ``what`` names the setting or option in the message."""
    if not str(path).strip():
        raise UserError(f"{what}: empty; name an output directory (use '.' for the current one)")
    target = Path(path)
    blocker = _blocking_file(target)
    if blocker is not None:
        where = "it is a file" if blocker == target else f"{blocker} is a file"
        raise UserError(f"{target}: {what} must name a directory, but {where}")
    return target


def make_directory(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` whose failures a user can fix (a file in the way, no permission) are one-line errors."""
    target = Path(path)
    if target.is_dir():
        return target
    check_output_directory(target, "the output path")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(target, exc) or exc from None
    return target


def is_valid_unicode(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (U+D800-U+DFFF), which no UTF-8 file can store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_line(record: Any) -> str:
    """``record`` as one JSON line: readable UTF-8, yet always writable and read back exactly.

    Why the fallback: a string may hold a lone surrogate (``"\\ud800"`` in a dataset row or a judge's
    reply decodes to one), which UTF-8 cannot encode, so ``ensure_ascii=False`` output would crash the
    write; such a record is written ASCII-escaped instead, which ``json.loads`` turns back into the same
    string.
    """
    line = json.dumps(record, ensure_ascii=False, default=str)
    return line if is_valid_unicode(line) else json.dumps(record, ensure_ascii=True, default=str)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (readers see the old file or the new one, never a mix).

    The file gets the mode a plain ``open(path, "w")`` would give it (0644 under the usual umask, or the
    replaced file's mode), not the 0600 of the temporary file, so results stay readable by colleagues.
    A full disk, a read-only or forbidden place, a directory where the file belongs or a file where a
    directory belongs are each a one-line :class:`UserError` naming the path; the old file stays as it was.
    """
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target}: is a directory, expected a file name")
    make_directory(target.parent)
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(target, exc) or exc from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(target, exc) or exc from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (ASCII-escaped only if it holds a lone surrogate)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    if not is_valid_unicode(text):
        text = json.dumps(data, indent=2, ensure_ascii=True, default=str)
    return atomic_write_text(path, text + "\n")


def append_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Append records to a JSONL file, one complete line at a time.

    Each line goes to the OS in full before the next (so a crash loses at most the line being written),
    and a write that fails (a full disk) is cut back to the last complete line before the error is
    raised, so the file never ends in half a record that a later append would glue onto.
    """
    target = Path(path)
    make_directory(target.parent)
    try:
        handle = target.open("ab", buffering=0)
    except OSError as exc:
        raise write_error(target, exc) or exc from None
    with handle:
        for record in records:
            data = (json_line(record) + "\n").encode("utf-8")
            start = handle.seek(0, os.SEEK_END)
            try:
                written = 0
                while written < len(data):
                    written += handle.write(data[written:]) or 0
            except OSError as exc:
                handle.truncate(start)
                raise write_error(target, exc) or exc from None


LOCK_FILE = ".rarl.lock"


@contextmanager
def directory_lock(directory: str | os.PathLike[str], *, hint: str) -> Iterator[None]:
    """Hold the one-writer lock of an output directory for the ``with`` block, or refuse at once.

    Why an OS lock (``flock`` on ``<directory>/.rarl.lock``): two runs writing one directory would both
    generate everything and append every item twice. The kernel releases the lock when the holder exits
    or is killed (``kill -9`` included), so it never goes stale and needs no cleanup; the file itself is
    left in place (removing it would let a third process lock a fresh file while the second holds the
    old one). A second writer gets a one-line :class:`UserError` naming the holder's pid and ``hint``.
    """
    import fcntl

    path = make_directory(directory) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    except OSError as exc:
        raise write_error(path, exc) or exc from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            who = f"another rarl process (pid {holder})" if holder.isdigit() else "another rarl process"
            raise UserError(f"{directory}: {who} is writing here now; {hint}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


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


def text_lines(data: bytes) -> list[bytes]:
    r"""The lines of a line-based file, split at ``\n`` only (a ``\r`` before it is kept; JSON ignores it).

    Why not ``str.splitlines``: that also breaks at U+2028, U+2029 and U+0085, which
    ``json.dumps(..., ensure_ascii=False)`` writes raw inside strings; one such character in a model
    output or a judge's explanation would cut its record in two. Splitting the *bytes* also lets
    each line be decoded on its own, so a last line torn inside a multi-byte character is recognised as
    torn instead of making the whole file "not UTF-8". A final newline ends the last line, it does not
    start an empty one.
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def decode_line(line: bytes, path: str, number: int) -> str:
    """One line as text (a UTF-8 byte-order mark on the first line is dropped); not UTF-8 is a DataError."""
    try:
        return line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line)"
        raise DataError(path, number, None, problem) from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def parse_json_line(text: str, path: str, number: int) -> Any:
    """One JSON value, strictly: invalid JSON, a key given twice in one object (``json`` would silently
    keep the last) or nesting too deep to decode is a :class:`DataError` naming file and line."""
    try:
        return json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise DataError(path, number, None, f"invalid JSON ({exc.msg})") from None
    except _DuplicateKey as exc:
        problem = f"invalid JSON (key {exc.key!r} appears twice in one object)"
        raise DataError(path, number, None, problem) from None
    except RecursionError:
        raise DataError(path, number, None, "invalid JSON (nested too deeply)") from None


def read_jsonl_numbered(
    path: str | os.PathLike[str], *, tolerate_truncated_tail: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    r"""Like :func:`read_jsonl`, with each object's 1-based line number (blank lines are skipped but
    counted), so validators can name the line a user sees in an editor.

    This is the one JSONL reader (predictions, judgements, dataset files, metrics logs; the judge cache,
    which drops bad lines instead of refusing, reads with the same :func:`text_lines`,
    :func:`decode_line` and :func:`parse_json_line`): lines end at ``\n`` only and are decoded one by
    one, so the tolerated torn last line may also be cut inside a multi-byte UTF-8 character.
    """
    source = Path(path)
    if not source.exists():
        raise UserError(f"{source}: file not found")
    if source.is_dir():
        raise UserError(f"{source}: is a directory, expected a JSONL file")
    lines = text_lines(source.read_bytes())
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = parse_json_line(decode_line(raw, str(source), number), str(source), number)
        except DataError:
            if tolerate_truncated_tail and number == len(lines):
                return
            raise
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
