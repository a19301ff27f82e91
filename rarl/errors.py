"""User-facing errors.

Anything a user can cause (a missing file, bad YAML, an unknown config key, a malformed dataset row)
raises :class:`UserError`. The CLI turns it into a one-line message and exit code 2, so users never see a
traceback for their own mistakes, while genuine bugs still surface with a full stack trace.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; printed as one line, exit code 2."""


class DataError(UserError):
    """A bad dataset row or file. The message names the file, the row and the field."""

    def __init__(self, path: str, row: int | str | None, field: str | None, problem: str) -> None:
        self.path = path
        self.row = row
        self.field = field
        self.problem = problem
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
