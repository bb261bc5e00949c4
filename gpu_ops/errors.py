"""Errors a user can fix. The CLI prints them as one line and exits non-zero, without a traceback."""


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
