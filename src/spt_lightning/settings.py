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
# Classes moved since earlier versions: their old ``_target_`` -> the new one. A saved config (a resumed run,
# a pack) is read with the new names (:func:`upgraded`); settings name each class by its old path, so that a
# run or a study made before the move keeps its settings and its digest (the study's folder names).
MOVED_TARGETS = {
    "spt_lightning.prototypes.PrototypeInit": "spt_lightning.callbacks.PrototypeInit",
    "spt_lightning.ema.TrainableEMA": "spt_lightning.callbacks.TrainableEMA",
    "spt_lightning.analysis.PromptAnalysis": "spt_lightning.callbacks.PromptAnalysis",
    "spt_lightning.loggers.LearningRates": "spt_lightning.callbacks.LearningRates",
}
_FIRST_NAMES = {new: old for old, new in MOVED_TARGETS.items()}
# Task families (data/families) -> the ``task.kind`` that named them before they were classes: settings
# record a family by that name, as runs and studies made before did.
FAMILY_KINDS = {
    "spt_lightning.data.families.FGVC": "fgvc",
    "spt_lightning.data.families.VTAB1k": "vtab",
    "spt_lightning.data.families.ImageFolder": "folder",
    "spt_lightning.data.families.Synthetic": "synthetic",
    "spt_lightning.data.families.AnimalMNIST": "animal_mnist",
}


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def upgraded(config: Any) -> Any:
    """``config`` (a plain or an OmegaConf container) with each moved ``_target_`` under its new name
    (:data:`MOVED_TARGETS`); everything else as it was."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(config, DictConfig | ListConfig):
        return OmegaConf.create(upgraded(OmegaConf.to_container(config)))
    if isinstance(config, dict):
        return {k: MOVED_TARGETS.get(v, v) if k == "_target_" and isinstance(v, str) else upgraded(v)
                for k, v in config.items()}
    if isinstance(config, list):
        return [upgraded(v) for v in config]
    return config


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

    return dict(_as_recorded(k, v) if k.endswith("_target_") else (k, placeheld(v))
                for k, v in _flatten(config).items() if not neutral(k))


def _as_recorded(key: str, target: Any) -> tuple[str, Any]:
    """A ``_target_`` setting under the name runs recorded before a class moved (see MOVED_TARGETS and
    FAMILY_KINDS), so that a move changes no setting and no study folder's name."""
    if key == "task.family._target_":
        return "task.kind", FAMILY_KINDS.get(target, target)
    return key, _FIRST_NAMES.get(target, target)


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
