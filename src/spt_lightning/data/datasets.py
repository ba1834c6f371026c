"""Datasets for the tasks: in-memory arrays (demo, synthetic) and split files on disk (FGVC, VTAB)."""

from __future__ import annotations

import gzip
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """A dataset folder, split file or image is missing or wrong; the message says how to fix it."""


class ArrayDataset(Dataset):
    """uint8 images ``[N, H, W]`` or ``[N, H, W, 3]`` with integer labels, held in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        self.images, self.labels, self.transform = images, labels.astype(np.int64), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[i])
        return (self.transform(image) if self.transform else image), int(self.labels[i])


class FileListDataset(Dataset):
    """Images listed as ``(relative path, label)`` under ``image_dir``.

    An unreadable image is an error naming the file, or, with ``skip_corrupt``, ``None`` (dropped by
    :func:`collate_skipping_none`, with a warning per file).
    """

    def __init__(self, image_dir: Path, items: list[tuple[str, int]], transform: Callable | None = None,
                 skip_corrupt: bool = False):
        self.image_dir, self.items, self.transform = Path(image_dir), items, transform
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int] | None:
        rel, label = self.items[i]
        path = self.image_dir / rel
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (OSError, ValueError) as err:
            if self.skip_corrupt:
                log.warning("skipped unreadable image %s (%s)", path, err)
                return None
            raise DataError(f"cannot read image {path}: {err}. Replace it, remove it from its split list, or set "
                            f"data.skip_corrupt=true to skip such images.") from err
        return (self.transform(image) if self.transform else image), label


def collate_skipping_none(batch: list) -> Any:
    """Default collation of the items that are not ``None`` (skipped corrupt images)."""
    return default_collate([item for item in batch if item is not None])


def read_json_split(path: Path) -> list[tuple[str, int]]:
    """VPT-style FGVC split: ``{"relative/path.jpg": class_id}``."""
    return [(rel, int(label)) for rel, label in json.loads(path.read_text()).items()]


def read_txt_split(path: Path) -> list[tuple[str, int]]:
    """VTAB-1k split list: one ``relative/path label`` per line."""
    items = []
    for line in path.read_text().splitlines():
        if line.strip():
            rel, label = line.rsplit(maxsplit=1)
            items.append((rel, int(label)))
    return items


def animal_mnist_arrays(data_file: Path, label_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Animal-MNIST: gzip'd pickles of uint8 ``[10000, 28, 28]`` images and int labels (10 classes)."""
    with gzip.open(data_file) as f:
        images = pickle.load(f)
    with gzip.open(label_file) as f:
        labels = pickle.load(f)
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def synthetic_arrays(num_classes: int, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A small learnable task without any download: noise around a colour of its own per class."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(48, 208, (num_classes, 3))
    labels = rng.integers(0, num_classes, n)
    noise = rng.integers(-48, 48, (n, size, size, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels
