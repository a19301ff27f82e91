"""Whole-file writes are atomic and get ordinary file modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rarl.io import atomic_write_json, atomic_write_text, has_torn_tail


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
