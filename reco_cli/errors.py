"""Errors that end a command with one clear line on stderr and a documented exit code.

Library code raises these; the CLI prints `Error: <message>` and exits with `exit_code`.
Anything else that escapes is a bug: the CLI prints the traceback and exits 70.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_INPUT_DATA = 4
EXIT_MODEL = 5
EXIT_UNKNOWN_USER = 6
EXIT_DIVERGED = 7
EXIT_INTERNAL = 70
EXIT_IO = 74  # the system failed us: disk full, permission denied while writing
EXIT_BROKEN_PIPE = 141  # stdout closed early (e.g. piped into head), as shells report SIGPIPE


class RecoError(Exception):
    """Base class: the message says what happened, where, and how to fix it."""

    exit_code = EXIT_INTERNAL


class ConfigError(RecoError):
    exit_code = EXIT_CONFIG


class InputDataError(RecoError):
    exit_code = EXIT_INPUT_DATA


class ModelBundleError(RecoError):
    exit_code = EXIT_MODEL


class UnknownUserError(RecoError):
    exit_code = EXIT_UNKNOWN_USER


class TrainingDivergedError(RecoError):
    exit_code = EXIT_DIVERGED


class GateFailedError(RecoError):
    exit_code = EXIT_GATE_FAILED
