"""Errors a user can act on: each names the path or key at fault and the fix."""

from __future__ import annotations


class LaminaError(Exception):
    """An error with a message for the user and, optionally, what to do about it.

    Example:
        >>> str(LaminaError("no store at /x", hint="run `lamina scan SOURCE` first"))
        'no store at /x\\n  fix: run `lamina scan SOURCE` first'
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  fix: {hint}")


class StoreError(LaminaError):
    """The store is missing, unwritable, locked or inside a source."""


class ConfigError(LaminaError):
    """A configuration or policy has an unknown key or a bad value."""


class SourceError(LaminaError):
    """A source does not exist or cannot be read."""
