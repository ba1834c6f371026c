"""The one base class of every error a user can fix: the command line prints its message alone
(the traceback goes to the run's log file), instead of a raw traceback."""

from __future__ import annotations

from typing import Any


class SptError(Exception):
    """Bad input (a config value, a file, a folder, a checkpoint); the message names it and how to fix it."""


class ConfigError(SptError, ValueError):
    """A config value is out of its valid range; the message names the ``key`` and how to fix it."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def check_number(key: str, value: Any, low: float, high: float | None = None, *, integer: bool = False,
                 low_open: bool = False, hint: str = "") -> Any:
    """``value`` of the config key ``key`` if it is a number in range, else a ConfigError naming the key:
    ``>= low`` (``> low`` when ``low_open``) and ``< high``; an integer when ``integer``."""
    kinds = int if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    if not ok or (value <= low if low_open else value < low) or (high is not None and value >= high):
        expected = (f"{'an integer' if integer else 'a number'} {'>' if low_open else '>='} {low}"
                    + (f" and < {high}" if high is not None else ""))
        raise ConfigError(f"{key}={value!r}: expected {expected}{hint}", key)
    return value
