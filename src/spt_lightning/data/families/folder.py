"""Any ImageFolder-style tree: train/, val/ and test/, each with one sub-folder per class (``task=folder``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import DataError
from .base import SPLITS, Family, SplitLists, require_data_dir


def folder_items(root: Path, split: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and ``(split/class/file, label)`` items of one split of an ImageFolder-style tree."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    try:
        classes, class_to_idx = find_classes(str(root / split))
        samples = make_dataset(str(root / split), class_to_idx, IMG_EXTENSIONS, allow_empty=True)
    except FileNotFoundError as err:
        raise DataError(f"{root / split}: {err}. task=folder expects task.data_dir to hold {ImageFolder.layout}") from err
    return classes, [(str(Path(path).relative_to(root)), label) for path, label in samples]


class ImageFolder(Family):
    layout = "train/, val/ and test/, each with one sub-folder per class, the same classes in each"

    def split_lists(self, task: dict[str, Any]) -> SplitLists:
        root = require_data_dir(task, self.layout)
        return SplitLists(root, root, {s: root / s for s in SPLITS},
                          {s: folder_items(root, s)[1] if (root / s).is_dir() else None for s in SPLITS})

    def datasets(self, task: dict[str, Any], transforms: dict, skip_corrupt: bool = False) -> dict:
        from ..datasets import FileListDataset

        root = require_data_dir(task, self.layout)
        missing = [s for s in SPLITS if not (root / s).is_dir()]
        if missing:
            raise DataError(f"{root} lacks {', '.join(f'{s}/' for s in missing)}: task=folder expects task.data_dir to hold {self.layout}")
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

    def provenance(self, task: dict[str, Any]) -> dict[str, Any]:
        return {"standard": False, "how": f"a custom image folder ({task.get('data_dir')})"}

    def num_classes(self, task: dict[str, Any]) -> int:
        """The sub-folders of ``train/``."""
        train = require_data_dir(task, self.layout) / "train"
        if not train.is_dir():
            raise DataError(f"{train} not found: task=folder expects task.data_dir to hold {self.layout}")
        return sum(1 for p in train.iterdir() if p.is_dir())
