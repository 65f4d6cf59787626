"""Exceptions of the platform.

Every error the library raises on purpose derives from :class:`RetrainError` and from
the builtin it specialises, so callers can catch either. Messages say what is wrong and
what to do about it.
"""

from __future__ import annotations

# Exit codes of every ``retrain`` command: done, failed (a retry may help), bad input (fix
# the config, the data or the arguments first).
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class RetrainError(Exception):
    """Base class of every error raised by ``retrain_lib`` on purpose."""


class ConfigError(RetrainError, ValueError):
    """A configuration file is missing, unreadable or invalid.

    ``problems`` holds one :class:`~retrain_lib.core.config_problems.ConfigProblem` per problem found,
    so a caller can show all of them at once.
    """

    def __init__(self, message: str, problems: list | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class DataError(RetrainError, ValueError):
    """Input data is missing or does not match the model config (a retry will not help)."""


class TrainingError(RetrainError, RuntimeError):
    """Training could not produce a model."""


class RegistryError(RetrainError, RuntimeError):
    """The model registry is not in the state an operation expects."""


class StaleChampionError(RegistryError):
    """``champion`` moved after the candidate was evaluated (compare-and-swap failed)."""

    def __init__(self, message: str, *, expected: str | None, current: str | None):
        super().__init__(message)
        self.expected = expected
        self.current = current
