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


def one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--config", "{cfg}", "--resume-from", "X", "eval.batch_size=0"],
        ["train", "--config", "{cfg}", "train.grpo.max_steps=2", "--resume-from", "X", "eval.batch_size=0"],
        ["eval", "--config", "{cfg}", "--overwrite", "eval.batch_size=0"],
        ["data", "inspect", "{cfg}", "--show", "0", "eval.batch_size=0"],
    ],
)
def test_overrides_after_options_are_parsed_as_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("train:\n  grpo:\n    max_steps: 1\n")
    # The override is applied (and refused by validation), so it was read as an override, not as junk.
    line = one_line_error(capsys, main([a.replace("{cfg}", str(cfg)) for a in args]))
    assert "eval.batch_size: must be an integer >= 1 (got 0)" in line


def test_a_word_that_is_no_override_is_still_refused_with_the_subcommand_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", "x.yaml", "train.grpo.beta=1", "--resume-from", "X", "stray"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: rarl train" in err and "unrecognized arguments: stray" in err


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_review_serve_refuses_a_port_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    code = main(
        ["review", "serve", "--predictions", "p.jsonl", "--db", str(tmp_path / "r.db"), "--port", port]
    )
    assert f"--port {port}: out of range (1-65535, or 0 for any free port)" in one_line_error(capsys, code)
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize(
    ("command", "hint"),
    [("judge", "finished judgements are cached"), ("bench", "rerun the same command"), ("report", None)],
)
def test_ctrl_c_ends_with_a_resume_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str, hint: str | None
) -> None:
    import importlib

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(f"rarl.commands.{COMMANDS[command]}"), "run", interrupted)
    args = {"report": ["report", "some_dir"], "bench": ["bench", "rewards"]}.get(
        command, [command, "--config", "x.yaml"]
    )
    assert main(args) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rarl {command}: interrupted")
    assert (hint in err) if hint else err == f"rarl {command}: interrupted"


def test_a_full_disk_outside_rarls_own_writers_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno
    import importlib

    def saving_a_checkpoint(args: object) -> int:  # what torch.save or sqlite raise on a full disk
        raise OSError(errno.ENOSPC, "No space left on device", "outputs/run/checkpoint-5/adapter.bin")

    monkeypatch.setattr(importlib.import_module("rarl.commands.train"), "run", saving_a_checkpoint)
    assert main(["train", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "rarl train: error: outputs/run/checkpoint-5/adapter.bin: cannot write: no space left"
    )
    assert len(err.splitlines()) == 1

    def a_bug(args: object) -> int:  # any other OSError is not the user's: it keeps its traceback
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(importlib.import_module("rarl.commands.train"), "run", a_bug)
    with pytest.raises(OSError, match="Bad file descriptor"):
        main(["train", "--config", "x.yaml"])
