"""Exceptions raised by llmkt. Every message names the field, what was expected and how to fix it."""

from __future__ import annotations


class LLMKTError(Exception):
    """Base class of every error llmkt raises on purpose."""


class DataError(LLMKTError, ValueError):
    """Input data is missing, malformed or empty after preprocessing."""


class ConfigError(LLMKTError, ValueError):
    """A configuration is invalid (unknown key, wrong type, bad value)."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset's files are not where they were looked for."""


class LLMKTWarning(UserWarning):
    """Something works but is probably not what the user meant (the CLI prints it as one ``warning:`` line)."""
