"""CLI: subcommands are listed, and user mistakes end in one line on stderr with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rarl.cli import COMMANDS, main

REQUIRED = ["train", "eval", "judge", "report", "ask", "demo", "bench"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rarl.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in REQUIRED:
        assert name in COMMANDS
        assert f"    {name} " in out


def test_no_subcommand_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--config", "does/not/exist.yaml"], "config file not found"),
        (["eval", "--config", "does/not/exist.yaml"], "config file not found"),
    ],
)
def test_user_mistakes_are_one_line_errors(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_bad_yaml_and_unknown_key_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  grpo:\n    max_steps: 1\n")
    for args, message in [
        (["train", "--config", str(bad)], "invalid YAML"),
        (["train", "--config", str(good), "train.bta=1"], "unknown config key 'train.bta'"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.stderr
