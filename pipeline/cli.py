"""What every command line of the project shares: flags from a config dataclass, one `error:`
line for a bad invocation, quiet logs, and progress lines on long work.

- argparse prints its usage block and a message on an error; a user (and a CI log) wants the
  one line that says what is wrong. `Parser.error` raises `UsageError` instead, and each
  `main` reports it with `report`, as it does the checks it makes itself before any work.
- Flags are generated from a frozen config dataclass (`add_dataclass_flags`): one flag per
  field, named after it, its help the field's line in the docstring's `Attributes:`, so a
  flag and the setting it fills cannot be named or documented twice.
- TensorFlow 2.21 prints its oneDNN, CUDA and CPU-feature lines from C++ before its logging is
  initialised, so `TF_CPP_MIN_LOG_LEVEL` cannot hide them: `import_tensorflow` imports it with
  the process's stderr pointed at /dev/null. `--verbose` keeps everything.
- `Progress` prints rows done and rows/s every few seconds on stderr: printed, not logged,
  because worker logging is quiet by default, and stderr reaches the console locally and the
  worker logs on Dataflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
import threading
import time
from typing import Callable

USAGE_STATUS = 2
PROGRESS_SECONDS = 5.0
# Field metadata for `add_dataclass_flags`.
NOT_A_FLAG = {"flag": False}  # Set by the program (derived values), not by the user.
REQUIRED = {"required": True}


class UsageError(Exception):
    """A bad invocation: reported as one line, before any work."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are `UsageError`s (`--help` still prints and exits 0)."""

    def error(self, message):
        raise UsageError(message)


def first_line(text: str) -> str:
    """The first non-empty line of a (possibly long) error message."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def tf_error_summary(message: str) -> str:
    """The one informative line of a TF op error: graph errors wrap it in node traces, eager
    ones end it with `[Op:Name] name:`."""
    asserted = re.search(r"assertion failed: \[([^\]]+)\]", message)
    if asserted:
        return asserted.group(1)
    for line in message.splitlines():
        line = re.sub(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]( name:\S*)?", "", line).strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "File ", "[")):
            return line
    return message.strip()[:200]


def report(error: BaseException, status: int = USAGE_STATUS) -> int:
    """Prints `error: <first line>` to stderr and returns `status`, for `return cli.report(error)`."""
    text = first_line(error) or type(error).__name__
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


# --- Flags from a config dataclass --------------------------------------------------------------

def attribute_docs(config_class) -> dict[str, str]:
    """Each field's text in the `Attributes:` blocks of the class's docstring and its bases'
    (continuation lines joined)."""
    docs: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):
        docs.update(_attribute_docs(klass.__dict__.get("__doc__")))
    return docs


def _attribute_docs(docstring: str | None) -> dict[str, str]:
    docs: dict[str, str] = {}
    current, indent = None, None
    for line in (docstring or "").splitlines():
        match = re.match(r"^(\s*)([A-Za-z_]\w*): (.+)$", line)
        if match and (indent is None or len(match.group(1)) <= indent):
            current, indent = match.group(2), len(match.group(1))
            docs[current] = match.group(3).strip()
        elif current and line.strip() and indent is not None and len(line) - len(line.lstrip()) > indent:
            docs[current] += " " + line.strip()
        elif not line.strip():
            current = None
    return docs


def dataclass_fields(config_class) -> list[dataclasses.Field]:
    """The fields of `config_class` that are flags."""
    return [field for field in dataclasses.fields(config_class) if field.metadata.get("flag", True)]


def add_dataclass_flags(parser: argparse.ArgumentParser, config_class,
                        shown_defaults: dict[str, str] | None = None) -> None:
    """One flag per field of `config_class` (`--field-name`), typed and documented from the class.

    A field with `REQUIRED` metadata is a required flag; `NOT_A_FLAG` fields are skipped.
    `shown_defaults` names fields whose default is decided later (the flag's default is then
    None) and says, for the help, where it comes from.
    """
    shown_defaults = shown_defaults or {}
    docs = attribute_docs(config_class)
    group = parser.add_argument_group(config_class.__name__)
    for field in dataclass_fields(config_class):
        flag = "--" + field.name.replace("_", "-")
        later = field.name in shown_defaults
        default = None if later else field.default
        if field.metadata.get("required"):
            help_text = docs.get(field.name, "")
            options = {"required": True}
        else:
            shown = shown_defaults.get(field.name, field.default if field.default != "" else "none")
            help_text = f"{docs.get(field.name, '')} (default: {shown})".replace("%", "%%")
            options = {"default": default}
        if str(field.type) == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text, **options)
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            group.add_argument(flag, type=kind, help=help_text, **options)


def dataclass_from_args(config_class, args: argparse.Namespace, **derived):
    """The `config_class` instance the parsed flags describe (plus derived, non-flag values)."""
    values = vars(args)
    return config_class(**{field.name: values[field.name] for field in dataclass_fields(config_class)}, **derived)


# --- Quiet logs ---------------------------------------------------------------------------------

def configure_logs(verbose: bool) -> None:
    """Log levels for a command: INFO with `verbose`, otherwise errors only, TF quiet, and Beam
    silent: a job that fails says so in its own one line (`launcher.main`), so Beam's traceback
    of the failed DoFn is only shown with `--verbose`."""
    # Level 3 hides TF's C++ errors too ("failed call to cuInit" on machines without a GPU);
    # real failures still reach Python as exceptions.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if verbose else os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")
    # Errors only otherwise: Beam warns on the root logger, at every import, about optional GCP
    # clients it cannot find.
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.INFO if verbose else logging.CRITICAL)


def import_tensorflow(verbose: bool = False):
    """`import tensorflow`, without its C++ start-up lines unless `verbose`."""
    if verbose or "tensorflow" in sys.modules:
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tensorflow


# --- Progress -----------------------------------------------------------------------------------

class Progress:
    """Counts rows of one stage in one worker thread and reports them every PROGRESS_SECONDS."""

    def __init__(self, what: str):
        self._what = what
        self._count = 0
        self._started = self._last = time.monotonic()

    def tick(self, rows: int = 1) -> None:
        self._count += rows
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS:
            self._last = now
            rate = self._count / (now - self._started)
            worker = f"{os.getpid()}/{threading.current_thread().name}"
            print(f"{self._what} (worker {worker}): {self._count} rows, {rate:.1f} rows/s", file=sys.stderr, flush=True)
