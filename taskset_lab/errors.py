"""User-facing errors: the CLI prints these as one line, without a traceback."""


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
