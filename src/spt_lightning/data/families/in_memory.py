"""The offline demo tasks: images made or unpacked in memory, split by a seeded draw (``task.sizes``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import DataError
from .base import SPLITS, Family


def seeded_split(n: int, sizes: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    """Disjoint index sets of the given sizes, drawn by a fixed permutation of ``range(n)``."""
    if sum(sizes.values()) > n:
        raise DataError(f"split sizes {dict(sizes)} need {sum(sizes.values())} items, the data has {n}")
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for split in SPLITS:
        out[split] = order[start : start + sizes[split]]
        start += sizes[split]
    return out


class InMemory(Family):
    """Images and labels as arrays; a subclass makes them (``arrays``)."""

    def arrays(self, task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def datasets(self, task: dict[str, Any], transforms: dict, skip_corrupt: bool = False) -> dict:
        from ..datasets import ArrayDataset

        images, labels = self.arrays(task)  # in memory: nothing to skip
        index = seeded_split(len(labels), task["sizes"], task["split_seed"])
        return {s: ArrayDataset(images[index[s]], labels[index[s]], transforms[s]) for s in SPLITS}

    def provenance(self, task: dict[str, Any]) -> dict[str, Any]:
        return {"standard": False, "how": f"a seeded draw of {task.get('sizes')} (split_seed {task.get('split_seed')})"}


class Synthetic(InMemory):
    """Noise around a colour per class, made from ``task.split_seed``: no download."""

    def arrays(self, task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from ..datasets import synthetic_arrays

        n = sum(task["sizes"].values())
        return synthetic_arrays(task["num_classes"], n, task["image_size"], task["split_seed"])


class AnimalMNIST(InMemory):
    """Animal-MNIST, shipped inside the animal-mnist wheel (``assets``)."""

    def arrays(self, task: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        from ...assets import wheel_members
        from ..datasets import animal_mnist_arrays

        return animal_mnist_arrays(*wheel_members("animal_mnist"))
