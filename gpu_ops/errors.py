"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""

import reprlib


class UserError(Exception):
    """Bad input: the message names what is wrong and how to fix it."""


class ConfigError(UserError):
    """An experiment file that does not validate."""


class CapabilityError(UserError):
    """A config asks a backend for something it cannot honour."""


class BackendUnavailable(UserError):
    """The backend's library is not installed or not importable."""


class MeasurementError(RuntimeError):
    """A measurement that failed mid-run (meter error, engine crash); its window is discarded."""


EXCERPT_CHARS = 60
_REPR = reprlib.Repr()  # Python 3.11 takes its limits as attributes
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = EXCERPT_CHARS


def excerpt(value: object, bare: bool = False) -> str:
    """A short, bounded repr of untrusted input for an error message: a message never quotes a whole input, and
    building it never walks a huge or deeply nested value (reprlib stops at its limits). `bare`: a string without
    its quotes."""
    if isinstance(value, bytes):
        value = value[: EXCERPT_CHARS * 4].decode("utf-8", "backslashreplace")
    text = _REPR.repr(value)
    if bare and isinstance(value, str):
        text = text[1:-1]
    if isinstance(value, str):  # names from a file system may hold undecodable bytes (surrogates): show them escaped
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= EXCERPT_CHARS + 10 else text[:EXCERPT_CHARS] + "..."
