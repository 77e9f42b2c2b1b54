"""User-facing errors: one clear line naming the file and what to do; the CLI prints them without a traceback."""

import errno


class RobenchError(Exception):
    """Base class of every error the CLI reports as a one-line message."""


class DataError(RobenchError):
    """Input data is missing, corrupt, or not what the suite expects."""


class ConfigError(RobenchError):
    """An option, method, suite or hyperparameter is unknown or invalid."""


class RunStateError(RobenchError):
    """A run folder is in a state that forbids the requested action."""


def describe_os_error(exc: OSError) -> str:
    """One line: the path, what the system said, and what to do about it."""
    where = exc.filename or "a file"
    advice = {
        errno.EACCES: "check its permissions or choose a folder you can write (--out, ROBENCH_HOME)",
        errno.EPERM: "check its permissions or choose a folder you can write (--out, ROBENCH_HOME)",
        errno.EROFS: "the file system is read-only; choose a writable folder (--out, ROBENCH_HOME)",
        errno.ENOSPC: "the disk is full; free space and rerun with --resume (finished files are intact)",
        errno.EDQUOT: "the disk quota is exhausted; free space and rerun with --resume",
        errno.ELOOP: "the path is a loop of symbolic links; point the option at a real folder",
        errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
        errno.EEXIST: "a file is in the way of a folder; move it or choose another path",
        errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
    }.get(exc.errno or 0, "check the path and rerun (--debug shows the traceback)")
    return f"{where}: {exc.strerror or exc.__class__.__name__}; {advice}"
