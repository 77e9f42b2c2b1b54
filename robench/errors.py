"""User-facing errors: one clear line naming the file and what to do; the CLI prints them without a traceback."""


class RobenchError(Exception):
    """Base class of every error the CLI reports as a one-line message."""


class DataError(RobenchError):
    """Input data is missing, corrupt, or not what the suite expects."""


class ConfigError(RobenchError):
    """An option, method, suite or hyperparameter is unknown or invalid."""


class RunStateError(RobenchError):
    """A run folder is in a state that forbids the requested action."""
