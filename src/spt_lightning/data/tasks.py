"""Task catalogue: a task config (``conf/task/*``) → train / val / test datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from . import vtab1k

from .datasets import (
    ArrayDataset,
    DataError,
    FileListDataset,
    animal_mnist_arrays,
    read_json_split,
    read_txt_split,
    synthetic_arrays,
)

SPLITS = ("train", "val", "test")


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


def _array_datasets(images, labels, task, transforms) -> dict[str, Dataset]:
    index = seeded_split(len(labels), task["sizes"], task["split_seed"])
    return {s: ArrayDataset(images[index[s]], labels[index[s]], transforms[s]) for s in SPLITS}


def _animal_mnist(task, transforms, skip_corrupt=False) -> dict[str, Dataset]:  # in memory: nothing to skip
    from ..assets import wheel_members

    return _array_datasets(*animal_mnist_arrays(*wheel_members("animal_mnist")), task, transforms)


def _synthetic(task, transforms, skip_corrupt=False) -> dict[str, Dataset]:
    n = sum(task["sizes"].values())
    return _array_datasets(*synthetic_arrays(task["num_classes"], n, task["image_size"], task["split_seed"]), task, transforms)


SPLIT_FILES = {
    "fgvc": {"train": "train.json", "val": "val.json", "test": "test.json"},
    "vtab": {split: vtab1k.SPLIT_FILES[vtab1k.OUR_SPLITS[split]] for split in SPLITS},
}
SPLIT_READERS: dict[str, Callable[[Path], list[tuple[str, int]]]] = {"fgvc": read_json_split, "vtab": read_txt_split}


def _split_files(kind: str):
    reader, names = SPLIT_READERS[kind], SPLIT_FILES[kind]

    def build(task, transforms, skip_corrupt=False) -> dict[str, Dataset]:
        root = require_data_dir(task)
        image_dir = root / task.get("image_dir", "")
        out = {}
        for split in SPLITS:
            path = root / names[split]
            if not path.is_file():
                raise DataError(f"split file missing: {path}. Task {task['name']} expects {sorted(names.values())} "
                                f"in {root}; `python -m spt_lightning.data prepare {task['name']} --raw DIR` writes them.")
            items = reader(path)
            if not items:
                raise DataError(f"{path} lists no images: split '{split}' of task {task['name']} is empty. "
                                f"Write it again with `python -m spt_lightning.data prepare {task['name']}`.")
            bad = next(((rel, y) for rel, y in items if not 0 <= y < task["num_classes"]), None)
            if bad is not None:
                raise DataError(f"{path}: label {bad[1]} of {bad[0]} is outside 0..{task['num_classes'] - 1} "
                                f"(task.num_classes={task['num_classes']}); fix the split file or task.num_classes")
            out[split] = FileListDataset(image_dir, items, transforms[split], skip_corrupt)
        return out

    return build


def require_data_dir(task: dict[str, Any]) -> Path:
    root = Path(str(task["data_dir"])).expanduser().absolute()
    if not root.is_dir():
        raise DataError(
            f"data folder for task {task['name']} not found: {root}\n"
            f"Set paths.data_dir=/your/datasets (or the SPT_DATA_DIR environment variable) so that it holds "
            f"{root.name}/, or point task.data_dir=/path/to/{root.name} at the folder itself."
        )
    return root


def folder_items(root: Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and ``(split/class/file, label)`` items of one split of an ImageFolder-style tree."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root / split))
        samples = make_dataset(str(root / split), class_to_idx, IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError as err:
        raise DataError(f"{root / split}: {err}. task=folder expects train/, val/ and test/ under task.data_dir, "
                        f"each with one sub-folder per class") from err
    return classes, [(str(Path(path).relative_to(root)), label) for path, label in samples]


def _image_folders(task, transforms, skip_corrupt=False) -> dict[str, Dataset]:
    root = require_data_dir(task)
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(f"{root} lacks {', '.join(f'{s}/' for s in missing)}: task=folder expects train/, val/ "
                        f"and test/ under task.data_dir, each with one sub-folder per class")
    classes, out = {}, {}
    for s in SPLITS:
        classes[s], items = folder_items(root, s)
        if not items:
            raise DataError(f"{root / s} holds no images in class sub-folders (split '{s}' of task=folder)")
        out[s] = FileListDataset(root, items, transforms[s], skip_corrupt)
    for s in ("val", "test"):
        if classes[s] != classes["train"]:
            raise DataError(f"{root / s} has classes {classes[s][:5]}..., train/ has {classes['train'][:5]}...: "
                            f"every split needs the same class folders")
    return out


def infer_num_classes(task: dict[str, Any]) -> int:
    """Classes of a ``folder`` task: the sub-folders of ``train/``."""
    train = require_data_dir(task) / "train"
    if not train.is_dir():
        raise DataError(f"{train} not found: task=folder expects train/, val/ and test/ under task.data_dir")
    return sum(1 for p in train.iterdir() if p.is_dir())


BUILDERS: dict[str, Callable[[dict, dict, bool], dict[str, Dataset]]] = {
    "folder": _image_folders,
    "animal_mnist": _animal_mnist,
    "synthetic": _synthetic,
    "fgvc": _split_files("fgvc"),
    "vtab": _split_files("vtab"),
}


def build_datasets(task: dict[str, Any], transforms: dict[str, Callable],
                   skip_corrupt: bool = False) -> dict[str, Dataset]:
    """Datasets for ``train``, ``val`` and ``test`` of one task, with the given transform per split."""
    kind = task["kind"]
    if kind not in BUILDERS:
        raise DataError(f"task {task['name']} has unknown kind '{kind}'; known kinds: {sorted(BUILDERS)}")
    return BUILDERS[kind](task, transforms, skip_corrupt)
