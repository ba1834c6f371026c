"""Writing files so that an interrupted run, or a concurrent sweep job, never sees half a file."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` beside ``path``, then rename over it (atomic on one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def home_relative(value: object) -> object:
    """``value`` with every string that is a path under the home folder written as ``~/...`` (lists and
    dicts followed): what a run records (results.json, W&B, a study's summaries) names no user's home."""
    if isinstance(value, dict):
        return {k: home_relative(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [home_relative(v) for v in value]
    if isinstance(value, str):
        home = str(Path.home()).rstrip("/")
        if home and (value == home or value.startswith(f"{home}/")):
            return "~" + value[len(home):]
    return value


def file_name(text: object) -> str:
    """``text`` (a task, a method: values read from results files) as a single file name: every character
    but letters, digits, ``.``, ``=`` and ``-`` becomes ``_``, so it can hold no folder and never escape the
    folder it is written into."""
    return re.sub(r"[^\w.=-]+", "_", str(text)).strip("._") or "_"
