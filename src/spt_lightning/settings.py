"""What makes two runs the same run: a run's *settings* are its resolved config less the keys that
cannot change its result. A study reuses a finished run only when its settings equal the requested ones,
and names each run's folder by their digest; the report groups runs by them.

Torch-free (the report and the study driver import it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from .files import home_relative

# Keys that never change what a run computes: where it reads and writes, how it logs and shows progress,
# how it treats an existing folder. Prefixes end in ".". NOTE: data.num_workers is a setting: each
# loader worker has its own random stream, so random augmentations depend on the worker count.
NEUTRAL = ("paths.", "hydra.", "logger.", "resume", "overwrite", "init.cache_dir", "data.pin_memory",
           "trainer.enable_progress_bar", "trainer.log_every_n_steps", "trainer.enable_model_summary",
           "callbacks.learning_rates.", "data.cache_images", "paper_figure")
# What differs between the prompt inits of one setting (init.strategy mirrors prompt.init): SPT and its
# VPT twin, or two inits, are the same setting apart from these.
INIT_KEYS = ("method.name", "prompt.init", "init.strategy")
# Path values are written as placeholders, so that a value derived from a folder (a checkpoint dirpath,
# a task's data_dir under paths.data_dir) does not make the same run two runs in two places.
PLACEHOLDERS = {"output_dir": "<run>", "data_dir": "<data>", "log_dir": "<logs>"}


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def neutral(key: str) -> bool:
    """Whether ``key`` (flat, dotted) cannot change a run's result (``NEUTRAL``)."""
    return any(key == n or (n.endswith(".") and key.startswith(n)) for n in NEUTRAL)


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The flat ``{key: value}`` settings of a resolved config (a run's ``results.json["config"]``); paths
    under the home folder compare as ``~/...`` (as results.json records them)."""
    config = home_relative(config)
    paths = {name: str(config.get("paths", {}).get(name) or "") for name in PLACEHOLDERS}
    # longest first: an output_dir inside log_dir becomes <run>, not <logs>/...
    swaps = sorted(((value, PLACEHOLDERS[name]) for name, value in paths.items() if value), key=lambda s: -len(s[0]))

    def placeheld(value: Any) -> Any:
        if isinstance(value, str):  # a path under one of the folders (its prefix), not any substring
            for path, placeholder in swaps:
                if value == path or value.startswith(f"{path.rstrip('/')}/"):
                    return placeholder + value[len(path):]
        elif isinstance(value, list):
            value = [placeheld(v) for v in value]
        return value

    return {k: placeheld(v) for k, v in _flatten(config).items() if not neutral(k)}


def digest(config: dict[str, Any]) -> str:
    """A short stable name for a config's settings (the study's run folders)."""
    text = json.dumps(settings(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def differences(stored: dict[str, Any], requested: dict[str, Any], limit: int = 3,
                ignore: Callable[[str], bool] = lambda key: False) -> list[str]:
    """``key: stored -> requested`` for the first settings that differ, less the ``ignore``d keys (for a
    refusal's message)."""
    a, b = settings(stored), settings(requested)
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>") and not ignore(k))
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys[:limit]]
