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
