"""The ``rarl`` command line.

Why: one entry point with a subcommand per user task. Each subcommand lives in its own
module under :mod:`rarl.commands` exposing ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``;
those modules import torch & co. only inside ``run`` so ``rarl --help`` stays instant. User mistakes
(:class:`~rarl.errors.UserError`) end as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rarl import __version__
from rarl.errors import UserError
from rarl.io import DISK_FULL, write_error

# subcommand name -> module under rarl.commands (order is the order shown in --help)
COMMANDS: dict[str, str] = {
    "train": "train",
    "eval": "evaluate",
    "judge": "judge",
    "report": "report",
    "ask": "ask",
    "demo": "demo",
    "bench": "bench",
    "data": "data",
    "review": "review",
    "export": "export",
}


# what a user interrupted with Ctrl+C should do next (commands whose work survives an interruption)
RESUME_HINTS: dict[str, str] = {  # train and eval print their own, naming the output directory
    "judge": "rerun the same command: finished judgements are cached",
    "bench": "rerun the same command",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rarl",
        description="Reasoning-aware RL (GRPO + LoRA) for medical vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"rarl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"rarl.commands.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting ``KEY=VALUE`` overrides stand anywhere on the line (also after ``--resume-from X``).

    Why: argparse matches a ``nargs="*"`` positional only once, at the first positional chunk, so
    overrides written after an option would be "unrecognized arguments". Leftover ``KEY=VALUE`` words are
    appended to the command's overrides; anything else is still an error, reported with the usage of the
    subcommand that was called (not the top-level usage).
    """
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    sub = getattr(args, "_parser", parser)
    takes_overrides = hasattr(args, "overrides")
    overrides = [word for word in extras if takes_overrides and "=" in word and not word.startswith("-")]
    unknown = [word for word in extras if word not in overrides]
    if unknown:
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = [*(args.overrides or []), *overrides]
    return args


def setup_logging(verbose: bool) -> None:
    """Rich logging to stderr (stdout stays for command output); libraries at WARNING unless --verbose."""
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=True, markup=False)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[handler],
        force=True,
    )
    for noisy in ("httpx", "urllib3", "PIL", "matplotlib", "filelock", "huggingface_hub", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.command is None:
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"rarl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk in a writer outside rarl.io (a checkpoint, the ratings database)
        if exc.errno not in DISK_FULL:
            raise
        print(f"rarl {args.command}: error: {write_error(exc.filename or 'a file', exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = RESUME_HINTS.get(args.command)
        print(f"rarl {args.command}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
