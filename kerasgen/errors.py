"""The errors a user can fix: each is reported as one line and exit code 2 (this module imports no TensorFlow)."""


class KerasgenError(Exception):
    """Bad input: the CLIs print `prog: error: <message>` on stderr and exit with code 2."""


class UsageError(KerasgenError):
    """A bad flag or argument on the command line."""


class ConfigError(KerasgenError, ValueError):
    """A bad --key=value setting, or settings that do not fit together."""


class DataError(KerasgenError, ValueError):
    """Unusable training data."""


class RunError(KerasgenError):
    """A run directory that is missing, unfinished, corrupted, busy, or not what the command needs."""
