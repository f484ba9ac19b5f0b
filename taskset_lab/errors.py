"""User-facing errors: the CLI prints these as one line, without a traceback."""

import errno
import os


class TasklabError(Exception):
    """A mistake in what the user asked for (config, input data, paths)."""


class ConfigError(TasklabError):
    """A missing or invalid config field. The message names the field."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"config field '{field}': {problem}")


class DataError(TasklabError):
    """Input data that is missing, unreadable or malformed."""


class ConfigErrors(ConfigError):
    """Several config problems found in one check, reported together (``field`` is the first's)."""

    def __init__(self, errors: "list[ConfigError]"):
        self.errors = list(errors)
        first = self.errors[0]
        self.field, self.problem = first.field, first.problem
        TasklabError.__init__(self, f"{len(self.errors)} config problems: "
                              + "; ".join(f"'{e.field}': {e.problem}" for e in self.errors))


class ConfigProblems:
    """Collects :class:`ConfigError` s so that a check reports every problem at once.

    Each independent check runs in its own ``with problems:`` block; a ConfigError raised in
    a block is recorded and the next block runs. :meth:`raise_all` raises what was recorded
    (the error itself for one, :class:`ConfigErrors` for several)::

        problems = ConfigProblems()
        with problems:
            check_total_steps(cfg)
        with problems:
            check_eval_every(cfg)
        problems.raise_all()
    """

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def __enter__(self) -> "ConfigProblems":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if isinstance(exc, ConfigErrors):
            self.errors.extend(exc.errors)
        elif isinstance(exc, ConfigError):
            self.errors.append(exc)
        else:
            return False
        return True

    def raise_all(self) -> None:
        errors, self.errors = self.errors, []
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ConfigErrors(errors)


# errors of the file system that are the user's to fix (permissions, space, a file where a folder belongs)
_USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                errno.EEXIST, errno.EDQUOT, errno.EFBIG}


def os_error_line(exc: BaseException) -> str | None:
    """One line for a file-system error the user can fix, or None for anything else."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno is None:  # pyarrow and others raise OSError with the errno only in the message
        text = str(exc)
        for code in _USER_ERRNOS:
            if os.strerror(code) in text:
                return (f"cannot write: {os.strerror(code).lower()} ({text.splitlines()[0] if text else code}); "
                        f"files finished before this are kept")
        return None
    if exc.errno not in _USER_ERRNOS:
        return None
    what = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
            errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
            errno.EPERM: "operation not permitted", errno.ENOTDIR: "a path component is a file, not a folder",
            errno.EISDIR: "is a folder, not a file", errno.EEXIST: "already exists",
            errno.EFBIG: "file too large"}[exc.errno]
    path = exc.filename if exc.filename is not None else ""
    where = f" at {path}" if path else ""
    return f"cannot write{where}: {what} ({exc.strerror or exc}); files finished before this are kept"
