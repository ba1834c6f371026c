"""The Lightning datamodule shared by every task."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .tasks import build_datasets
from .transforms import build_transforms


class TaskDataModule(L.LightningDataModule):
    """Train / val / test loaders for one task of the catalogue.

    Args:
        task: The task config (name, kind, num_classes, data location, transform recipe, ...).
        img_size: Input resolution of the backbone.
        mean: Normalisation mean of the pretrained weights.
        std: Normalisation std of the pretrained weights.
        batch_size: Per-device batch size.
        num_workers: Loader worker processes (0 loads in the main process).
        pin_memory: Pin host memory for faster copies to the GPU.
    """

    def __init__(
        self,
        task: dict[str, Any],
        img_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 32,
        num_workers: int = 2,
        pin_memory: bool = True,
    ):
        super().__init__()
        self.task = dict(task)
        self.img_size, self.mean, self.std = img_size, tuple(mean), tuple(std)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.datasets: dict[str, Dataset] = {}

    def transforms(self, train: bool):
        return build_transforms(self.task.get("transform", "resize"), self.img_size, self.mean, self.std, train)

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            train, evaluate = self.transforms(train=True), self.transforms(train=False)
            self.datasets = build_datasets(self.task, {"train": train, "val": evaluate, "test": evaluate})

    def prototype_dataloader(self, fraction: float = 1.0, seed: int = 0, batch_size: int | None = None) -> DataLoader:
        """The training split with **eval** transforms, in a fixed order (a seeded ``fraction`` of it)."""
        self.setup("fit")
        dataset = copy.copy(self.datasets["train"])
        dataset.transform = self.transforms(train=False)
        if fraction < 1.0:
            count = max(1, round(fraction * len(dataset)))
            keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
            dataset = Subset(dataset, keep.sort().values.tolist())
        return self._loader(dataset, shuffle=False, batch_size=batch_size, persistent=False)

    def _loader(self, dataset: Dataset, shuffle: bool, batch_size: int | None = None, persistent: bool = True) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=persistent and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], shuffle=False)
