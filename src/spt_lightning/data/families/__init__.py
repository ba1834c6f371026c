"""Task families: how a task's images are stored. A task names its family in its YAML
(``family: {_target_: spt_lightning.data.families.FGVC}``); a new layout is one ``Family`` subclass (its
datasets, and for data on disk its split lists, provenance and sizes) and the YAMLs of its tasks.
Torch-free to import (the study driver reads sizes without torch)."""

from __future__ import annotations

from typing import Any

from ...errors import DataError
from ...settings import FAMILY_KINDS
from .base import SPLITS, Family, SplitLists, require_data_dir
from .fgvc import FGVC
from .folder import ImageFolder, folder_items
from .in_memory import AnimalMNIST, InMemory, Synthetic, seeded_split
from .split_files import SplitFiles
from .vtab import VTAB1k

__all__ = ["FGVC", "SPLITS", "AnimalMNIST", "Family", "ImageFolder", "InMemory", "SplitFiles", "SplitLists",
           "Synthetic", "VTAB1k", "family_of", "folder_items", "require_data_dir", "seeded_split"]


def family_of(task: dict[str, Any]) -> Family:
    """The family a task config names (``task.family``: a ``_target_`` spec, or the object built from it);
    a task saved before families named its layout by ``task.kind``, read through settings.FAMILY_KINDS."""
    spec = task.get("family")
    if isinstance(spec, Family):
        return spec
    if spec is None:
        kinds = {kind: target for target, kind in FAMILY_KINDS.items()}
        if task.get("kind") not in kinds:
            raise DataError(f"task {task.get('name')} names no family: set task.family={{_target_: ...}} to a "
                            f"class of spt_lightning.data.families (or your own Family subclass)")
        spec = {"_target_": kinds[task["kind"]]}
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        family = instantiate(spec)
    except InstantiationException as err:
        raise DataError(f"task {task.get('name')}: task.family {dict(spec)} cannot be built: {err}") from None
    if not isinstance(family, Family):
        raise DataError(f"task {task.get('name')}: task.family builds a {type(family).__name__}, not a "
                        f"spt_lightning.data.families.Family")
    return family
