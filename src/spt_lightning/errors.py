"""The one base class of every error a user can fix: the command line prints its message alone
(the traceback goes to the run's log file), instead of a raw traceback."""

from __future__ import annotations

from typing import Any


class SptError(Exception):
    """Bad input (a config value, a file, a folder, a checkpoint); the message names it and how to fix it."""


class RunFolderError(SptError):
    """The run folder holds a run that this command must not touch, or the run to resume is not there."""


class DataError(SptError, RuntimeError):
    """A dataset folder, split file or image is missing or wrong; the message says how to fix it."""


class ConfigError(SptError, ValueError):
    """A config value is out of its valid range; the message names the ``key`` and how to fix it."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def check_number(key: str, value: Any, low: float, high: float | None = None, *, integer: bool = False,
                 low_open: bool = False, high_open: bool = True, hint: str = "") -> Any:
    """``value`` of the config key ``key`` if it is a number in range, else a ConfigError naming the key:
    ``>= low`` (``> low`` when ``low_open``) and ``< high`` (``<= high`` unless ``high_open``); an integer
    when ``integer``. The one range check of every config value."""
    kinds = int if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    above = high is not None and (value >= high if high_open else value > high) if ok else False
    if not ok or (value <= low if low_open else value < low) or above:
        expected = (f"{'an integer' if integer else 'a number'} {'>' if low_open else '>='} {low}"
                    + (f" and {'<' if high_open else '<='} {high}" if high is not None else ""))
        raise ConfigError(f"{key}={value!r}: expected {expected}{hint}", key)
    return value


def check_choice(key: str, value: Any, choices: tuple[str, ...] | list[str]) -> Any:
    """``value`` of the config key ``key`` if it is one of ``choices``, else a ConfigError listing them."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(map(str, choices))}", key)
    return value
