"""What every command line of the project shares: a bad invocation is one `error:` line, exit 2.

argparse prints its usage block and a message on an error; a user (and a CI log) wants the one
line that says what is wrong. `Parser.error` raises `UsageError` instead, and each `main`
reports it with `report`, as it does the checks it makes itself before any work.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

USAGE_STATUS = 2


class UsageError(Exception):
    """A bad invocation: reported as one line, before any work."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are `UsageError`s (`--help` still prints and exits 0)."""

    def error(self, message):
        raise UsageError(message)


def report(error: BaseException, status: int = USAGE_STATUS) -> int:
    """Prints `error: <first line>` to stderr and returns `status`, for `return cli.report(error)`."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    print(f"error: {text}", file=sys.stderr)
    return status


def parse(parser: argparse.ArgumentParser, argv: list[str] | None,
          check: Callable[[argparse.Namespace], str | None] = lambda args: None) -> argparse.Namespace | int:
    """The parsed flags, or, after reporting a bad invocation, the exit status to return.

    `check` returns what is wrong with the parsed flags (None or "" when nothing is):
    `args = cli.parse(...)`, then `if isinstance(args, int): return args`.
    """
    try:
        args = parser.parse_args(argv)
        problem = check(args)
        if problem:
            raise UsageError(problem)
    except UsageError as error:
        return report(error)
    return args
