"""Whole-file writes are atomic and get ordinary file modes."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from pathlib import Path

import pytest

from rarl.errors import DataError, UserError
from rarl.io import append_jsonl, atomic_write_json, atomic_write_text, has_torn_tail, read_jsonl


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what the OS gives a new file under this process's umask
    written = atomic_write_text(tmp_path / "results.md", "table\n")
    assert written.read_text() == "table\n"
    assert _mode(written) == _mode(plain)
    assert _mode(atomic_write_json(tmp_path / "results.json", {"a": 1})) == _mode(plain)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_rewriting_keeps_the_existing_mode(tmp_path: Path) -> None:
    target = tmp_path / "shared.json"
    target.write_text("{}")
    os.chmod(target, 0o640)
    atomic_write_text(target, "[]")
    assert _mode(target) == 0o640 and target.read_text() == "[]"


def test_a_torn_tail_is_a_last_line_without_its_newline(tmp_path: Path) -> None:
    cases = {"empty": b"", "whole": b'{"a": 1}\n', "torn": b'{"a": 1}\n{"b"', "crlf": b'{"a": 1}\r\n'}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    assert {name: has_torn_tail(tmp_path / name) for name in cases} == {
        "empty": False,
        "whole": False,
        "torn": True,
        "crlf": False,
    }


# --------------------------------------------------------------------------------------------------
# reading JSON Lines: records end at "\n" only, a torn last line may end inside a character

# Characters str.splitlines() breaks at but json.dumps(..., ensure_ascii=False) writes raw in a string.
LINE_BREAKERS = ["\u2028", "\u2029", "\u0085"]


def test_jsonl_lines_end_at_newline_only(tmp_path: Path) -> None:
    records = [
        {"id": str(i), "text": f"before{char}after", "extra": {"why": char * 2}}
        for i, char in enumerate(LINE_BREAKERS)
    ]
    records.append({"id": "crlf", "text": "windows"})
    path = tmp_path / "rows.jsonl"
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records[:-1])
    path.write_bytes(body.encode("utf-8") + json.dumps(records[-1]).encode() + b"\r\n")
    assert list(read_jsonl(path)) == records
    append_jsonl(path, [{"id": "more", "text": "\u2028"}])
    assert [r["id"] for r in read_jsonl(path)] == ["0", "1", "2", "crlf", "more"]


def test_a_last_line_torn_inside_a_multibyte_character_is_dropped(tmp_path: Path) -> None:
    first, second = {"id": "1", "answer": "肺部正常"}, {"id": "2", "answer": "心脏扩大" * 5}
    whole = (json.dumps(first, ensure_ascii=False) + "\n" + json.dumps(second, ensure_ascii=False)).encode()
    cut = whole.index("扩".encode()) + 1  # one byte into a three-byte character
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(whole[:cut])
    assert list(read_jsonl(path, tolerate_truncated_tail=True)) == [first]
    with pytest.raises(DataError, match=r"predictions\.jsonl, row 2: not UTF-8"):
        list(read_jsonl(path))
    # Only the last line may be torn: the same bytes earlier in the file are refused, naming the line.
    path.write_bytes(whole[:cut] + b"\n" + json.dumps(first).encode() + b"\n")
    with pytest.raises(DataError, match=r"predictions\.jsonl, row 2: not UTF-8"):
        list(read_jsonl(path, tolerate_truncated_tail=True))


def test_a_key_given_twice_is_refused_not_last_wins(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "1"}\n{"id": "2", "answer": "yes", "answer": "no"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl, row 2: .*'answer' appears twice"):
        list(read_jsonl(path))


def test_lone_surrogates_are_written_escaped_and_read_back_exactly(tmp_path: Path) -> None:
    records = [{"id": "1", "text": "a\ud800b", "nested": ["\udfff"]}, {"id": "2", "text": "plain é"}]
    append_jsonl(tmp_path / "log.jsonl", records)
    assert list(read_jsonl(tmp_path / "log.jsonl")) == records
    assert "é" in (tmp_path / "log.jsonl").read_text(encoding="utf-8")  # readable lines stay readable
    atomic_write_json(tmp_path / "results.json", {"model": "m\ud800"})
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8")) == {"model": "m\ud800"}


# --------------------------------------------------------------------------------------------------
# a full disk: one line naming the file, nothing half-written


class FullDisk(io.FileIO):
    """A file on a disk that fills up after ``room`` more bytes (what a 16 KiB tmpfs does)."""

    room = 5

    def write(self, data):  # type: ignore[override]
        if len(data) <= FullDisk.room:
            FullDisk.room -= len(data)
            return super().write(data)
        super().write(bytes(data[: FullDisk.room]))
        FullDisk.room = 0
        raise OSError(errno.ENOSPC, "No space left on device")


def fill_disk_on(monkeypatch, name: str, room: int) -> None:
    """Appends to files called ``name`` hit a full disk after ``room`` bytes; every other open is real."""
    original = Path.open
    FullDisk.room = room

    def opening(self, mode="r", buffering=-1, *args, **kwargs):
        if self.name == name and "a" in mode:
            return FullDisk(self, "a")
        return original(self, mode, buffering, *args, **kwargs)

    monkeypatch.setattr(Path, "open", opening)


def test_an_append_that_fills_the_disk_leaves_only_whole_lines(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "predictions.jsonl"
    append_jsonl(path, [{"id": "1", "answer": "肺部正常"}])
    before = path.read_bytes()
    fill_disk_on(monkeypatch, "predictions.jsonl", room=12)
    with pytest.raises(UserError, match=r"predictions\.jsonl: cannot write: no space left on device"):
        append_jsonl(path, [{"id": "2", "answer": "心脏扩大" * 10}])
    assert path.read_bytes() == before and not has_torn_tail(path)


def test_a_whole_file_write_that_fills_the_disk_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    target = atomic_write_text(tmp_path / "results.json", '{"old": true}\n')

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=r"results\.json: cannot write: no space left on device"):
        atomic_write_json(target, {"new": "x" * 10_000})
    assert target.read_text() == '{"old": true}\n' and sorted(p.name for p in tmp_path.iterdir()) == [
        "results.json"
    ]


def test_writing_where_a_directory_or_a_file_is_in_the_way_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(UserError, match=r"out: is a directory, expected a file name"):
        atomic_write_text(tmp_path / "out", "text")
    with pytest.raises(UserError, match=r"blocker.* is a file"):
        atomic_write_text(tmp_path / "blocker" / "sub" / "results.md", "text")
    with pytest.raises(UserError, match=r"blocker.* is a file"):
        append_jsonl(tmp_path / "blocker" / "predictions.jsonl", [{"a": 1}])
    assert (tmp_path / "blocker").read_text() == "x"


def _safetensors_loads(path) -> bool:
    """The independent oracle: the safetensors library reads every tensor."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                handle.get_tensor(key)
    except Exception:
        return False
    return True


def test_safetensors_problem_agrees_with_the_safetensors_library(tmp_path):
    import torch
    from safetensors.torch import save_file

    from rarl.io import safetensors_problem

    whole = tmp_path / "whole.safetensors"
    save_file({"a": torch.arange(100, dtype=torch.float32), "b": torch.ones(3, 7)}, str(whole))
    data = whole.read_bytes()
    cuts = sorted({0, 4, 8, 9, 40, len(data) // 2, len(data) - 1, len(data)})
    variants = [data[:cut] for cut in cuts] + [data + b"\0" * 16, b"x" * 200]
    for index, content in enumerate(variants):
        path = tmp_path / f"v{index}.safetensors"
        path.write_bytes(content)
        problem = safetensors_problem(path)
        assert (problem is None) == _safetensors_loads(path), (len(content), problem)
    assert safetensors_problem(whole) is None


def test_json_file_problem_names_what_is_wrong(tmp_path):
    from rarl.io import json_file_problem

    cases = {"": "is empty", '{"a": 1': "is not valid JSON", "[1]": "is not a JSON object", '{"r": 8}': None}
    for index, (text, expected) in enumerate(cases.items()):
        path = tmp_path / f"c{index}.json"
        path.write_text(text)
        problem = json_file_problem(path)
        assert problem is None if expected is None else problem.startswith(expected), (text, problem)
