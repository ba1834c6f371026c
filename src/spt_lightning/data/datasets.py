"""Datasets for the tasks: in-memory arrays (demo, synthetic) and split files on disk (FGVC, VTAB)."""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset, default_collate

from ..errors import SptError

log = logging.getLogger(__name__)


class DataError(SptError, RuntimeError):
    """A dataset folder, split file or image is missing or wrong; the message says how to fix it."""


class ArrayDataset(Dataset):
    """uint8 images ``[N, H, W]`` or ``[N, H, W, 3]`` with integer labels, held in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        self.images, self.labels, self.transform = images, labels.astype(np.int64), transform

    def __len__(self) -> int:
        return len(self.labels)

    def item_key(self, i: int) -> bytes:
        return hashlib.blake2b(self.images[i].tobytes() + bytes(str(self.labels[i]), "ascii"), digest_size=16).digest()

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

    def item_key(self, i: int) -> bytes:
        rel, label = self.items[i]
        return f"{self.image_dir / rel}\t{label}\n".encode()

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
    """Default collation of the items that are not ``None`` (skipped corrupt images); ``None`` when
    every item of the batch was skipped (the steps skip such a batch)."""
    items = [item for item in batch if item is not None]
    return default_collate(items) if items else None


def content_digest(dataset: Dataset) -> str:
    """A digest of exactly which items a dataset yields, in order: (file, label) for images on disk,
    (image bytes, label) for arrays in memory. Subsets and concatenations are followed to their items."""
    digest = hashlib.blake2b(digest_size=16)
    for key in _item_keys(dataset, range(len(dataset))):
        digest.update(key)
    return digest.hexdigest()


def _item_keys(dataset: Dataset, indices):
    if isinstance(dataset, Subset):
        yield from _item_keys(dataset.dataset, [dataset.indices[i] for i in indices])
    elif isinstance(dataset, ConcatDataset):
        for i in indices:
            part = bisect.bisect_right(dataset.cumulative_sizes, i)
            offset = dataset.cumulative_sizes[part - 1] if part else 0
            yield from _item_keys(dataset.datasets[part], [i - offset])
    elif isinstance(dataset, TensorDataset):
        yield from (b"".join(t[i].numpy().tobytes() for t in dataset.tensors) for i in indices)
    else:
        yield from (dataset.item_key(i) for i in indices)


def read_json_split(path: Path) -> list[tuple[str, int]]:
    """VPT-style FGVC split: ``{"relative/path.jpg": class_id}``."""
    try:
        return [(rel, int(label)) for rel, label in json.loads(path.read_text()).items()]
    except (ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path} is not a split file of the form {{\"relative/path.jpg\": class_id}}: {err}. "
                        f"`python -m spt_lightning.data prepare` writes it.") from err


def read_txt_split(path: Path) -> list[tuple[str, int]]:
    """VTAB-1k split list: one ``relative/path label`` per line."""
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}, line {number}: expected 'relative/path label', got {line.strip()!r}. "
                            f"Fix the line or write the lists again with `python -m spt_lightning.data prepare`.")
        items.append((parts[0], int(parts[1])))
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
