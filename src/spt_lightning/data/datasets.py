"""Datasets for the tasks: in-memory arrays (demo, synthetic) and split files on disk (FGVC, VTAB)."""

from __future__ import annotations

import bisect
import gzip
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset, default_collate

from ..errors import DataError

log = logging.getLogger(__name__)


# What opening an image can raise for a bad file (PIL's decompression-bomb guard is not an OSError).
UNREADABLE = (OSError, ValueError, Image.DecompressionBombError)
# A split list longer than this is refused before it fills memory (VTAB-1k's largest test split has 73,728
# images, NABirds' 24,633).
MAX_SPLIT_ITEMS = 1_000_000


def open_image(path: Path) -> Image.Image:
    """PIL's lazy image of ``path``, a regular file: a FIFO or device in a data folder would hang the loader,
    so it is refused (an OSError, as an unreadable file) before it is opened."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{path} is not a regular file")
    return Image.open(path)


class ImageDataset(Dataset):
    """Images with integer labels and a transform; ``decode`` can keep every image decoded in memory after
    the deterministic head of a transform (``data.cache_images``), so an epoch only crops, flips and
    normalises. Views made by copying (another transform, the same images) share what was decoded."""

    transform: Callable | None

    def __init__(self):
        self.decoded: dict[str, list[np.ndarray | None]] = {}  # repr(head) -> per image, shared by views

    def image(self, i: int) -> Image.Image | None:  # the decoded image (None: unreadable and skipped)
        raise NotImplementedError

    def label(self, i: int) -> int:
        raise NotImplementedError

    def _split(self):
        from .transforms import split_deterministic

        if getattr(self, "_split_of", None) is not self.transform:
            head, tail = split_deterministic(self.transform)
            self._split_of, self._parts = self.transform, (repr(head), tail)
        return self._parts

    def __getitem__(self, i: int):
        if self.transform is not None and self.decoded:
            key, tail = self._split()
            if key in self.decoded:
                array = self.decoded[key][i]
                return None if array is None else (tail(Image.fromarray(array)), self.label(i))
        image = self.image(i)
        if image is None:
            return None
        return (self.transform(image) if self.transform else image), self.label(i)

    def decode(self, transform, threads: int = 1) -> int:
        """Keep every image after ``transform``'s deterministic head, decoded by ``threads`` threads (PIL
        releases the GIL); returns the bytes kept (0 when that head was decoded before)."""
        from concurrent.futures import ThreadPoolExecutor

        from .transforms import split_deterministic

        head, _ = split_deterministic(transform)
        if repr(head) in self.decoded:
            return 0

        def one(i: int) -> np.ndarray | None:
            image = self.image(i)
            return None if image is None else np.asarray(head(image))

        with ThreadPoolExecutor(max(1, threads)) as pool:
            arrays = list(pool.map(one, range(len(self))))
        self.decoded[repr(head)] = arrays
        return sum(a.nbytes for a in arrays if a is not None)

    def decoded_bytes(self, transform) -> int:
        """About what :meth:`decode` would keep: the first image after the head, times the images when the
        head ends at a fixed size, else each image's own size (file headers only)."""
        from .transforms import split_deterministic

        head, _ = split_deterministic(transform)
        if not len(self):
            return 0
        image = self.image(0)
        first = np.asarray(head(image)) if image is not None else np.zeros((1, 1, 3), np.uint8)
        if any(type(step).__name__ in ("Resize", "CenterCrop") for step in head.transforms):
            return first.nbytes * len(self)
        return sum(3 * w * h for w, h in (self.size(i) for i in range(len(self))))

    def size(self, i: int) -> tuple[int, int]:
        image = self.image(i)
        return (0, 0) if image is None else image.size


class ArrayDataset(ImageDataset):
    """uint8 images ``[N, H, W]`` or ``[N, H, W, 3]`` with integer labels, held in memory."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable | None = None):
        super().__init__()
        self.images, self.labels, self.transform = images, labels.astype(np.int64), transform

    def __len__(self) -> int:
        return len(self.labels)

    def item_key(self, i: int) -> bytes:
        return hashlib.blake2b(self.images[i].tobytes() + bytes(str(self.labels[i]), "ascii"), digest_size=16).digest()

    def image(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])

    def label(self, i: int) -> int:
        return int(self.labels[i])


class FileListDataset(ImageDataset):
    """Images listed as ``(relative path, label)`` under ``image_dir``.

    An unreadable image is an error naming the file, or, with ``skip_corrupt``, ``None`` (dropped by
    :func:`collate_skipping_none`, with a warning per file).
    """

    def __init__(self, image_dir: Path, items: list[tuple[str, int]], transform: Callable | None = None,
                 skip_corrupt: bool = False):
        super().__init__()
        self.image_dir, self.items, self.transform = Path(image_dir), items, transform
        self.skip_corrupt = skip_corrupt

    def __len__(self) -> int:
        return len(self.items)

    def item_key(self, i: int) -> bytes:
        rel, label = self.items[i]
        return f"{self.image_dir / rel}\t{label}\n".encode()

    def label(self, i: int) -> int:
        return self.items[i][1]

    def size(self, i: int) -> tuple[int, int]:
        try:
            with open_image(self.image_dir / self.items[i][0]) as im:  # reads the header only
                return im.size
        except UNREADABLE:
            return (0, 0)

    def image(self, i: int) -> Image.Image | None:
        path = self.image_dir / self.items[i][0]
        try:
            with open_image(path) as im:
                return im.convert("RGB")
        except UNREADABLE as err:
            if self.skip_corrupt:
                log.warning("skipped unreadable image %s (%s)", path, err)
                return None
            raise DataError(f"cannot read image {path}: {err}. Replace it, remove it from its split list, or set "
                            f"data.skip_corrupt=true to skip such images.") from err


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


def _inside(rel: str, path: Path, where: str) -> str:
    """``rel``, a path relative to the data folder: an absolute path or a ``..`` would read files outside it."""
    parts = PurePosixPath(rel.replace("\\", "/")).parts
    if not rel or rel.startswith(("/", "\\")) or ".." in parts:
        raise DataError(f"{path}{where}: {rel!r} is not a path inside the data folder (absolute paths and '..' are "
                        f"refused). Fix the entry, or write the lists again with `python -m spt_lightning.data prepare`.")
    return rel


def _check_size(path: Path, count: int) -> None:
    if count > MAX_SPLIT_ITEMS:
        raise DataError(f"{path} lists more than {MAX_SPLIT_ITEMS:,} images (the largest benchmark split has under "
                        f"100,000); it is not a split list of this project. Check the file.")


def read_json_split(path: Path) -> list[tuple[str, int]]:
    """VPT-style FGVC split: ``{"relative/path.jpg": class_id}``."""
    if path.stat().st_size > 512 * MAX_SPLIT_ITEMS:  # read whole below: refused before, by its size
        _check_size(path, MAX_SPLIT_ITEMS + 1)
    try:
        entries = json.loads(path.read_text())
        items = [(_inside(rel, path, ""), int(label)) for rel, label in entries.items()]
    except (ValueError, TypeError, AttributeError) as err:
        raise DataError(f"{path} is not a split file of the form {{\"relative/path.jpg\": class_id}}: {err}. "
                        f"`python -m spt_lightning.data prepare` writes it.") from err
    _check_size(path, len(items))
    return items


def read_txt_split(path: Path) -> list[tuple[str, int]]:
    """VTAB-1k split list: one ``relative/path label`` per line."""
    items = []
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{path}, line {number}: expected 'relative/path label', got {line.strip()!r}. "
                                f"Fix the line or write the lists again with `python -m spt_lightning.data prepare`.")
            items.append((_inside(parts[0], path, f", line {number}"), int(parts[1])))
            _check_size(path, len(items))
    return items


def animal_mnist_arrays(data_file: Path, label_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Animal-MNIST: gzip'd pickles of uint8 ``[10000, 28, 28]`` images and int labels (10 classes), read
    as numpy arrays only (``trust.load_numpy_pickle``: a pickle naming anything else is refused)."""
    from ..trust import load_numpy_pickle

    images, labels = (load_numpy_pickle(gzip.decompress(Path(f).read_bytes()), f) for f in (data_file, label_file))
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def synthetic_arrays(num_classes: int, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A small learnable task without any download: noise around a colour of its own per class."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(48, 208, (num_classes, 3))
    labels = rng.integers(0, num_classes, n)
    noise = rng.integers(-48, 48, (n, size, size, 3))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels
