"""Tasks whose splits are list files in the task's folder (FGVC's json, VTAB-1k's txt)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...errors import DataError
from ..provenance import PROVENANCE
from .base import SPLITS, Family, SplitLists, require_data_dir


class SplitFiles(Family):
    """One list file per split in ``task.data_dir``, image paths relative to ``task.image_dir``. A subclass
    names its files (``files``: split -> file name; splits beyond train/val/test are only checked) and reads
    one (``read``)."""

    files: dict[str, str] = {}

    def read(self, path: Path) -> list[tuple[str, int]]:
        raise NotImplementedError

    def split_lists(self, task: dict[str, Any], splits: tuple[str, ...] | None = None) -> SplitLists:
        root = require_data_dir(task, self.layout)
        files = {split: root / name for split, name in self.files.items() if splits is None or split in splits}
        return SplitLists(root, root / task.get("image_dir", ""), files,
                          {split: self.read(path) if path.is_file() else None for split, path in files.items()})

    def datasets(self, task: dict[str, Any], transforms: dict, skip_corrupt: bool = False) -> dict:
        from ..datasets import FileListDataset

        lists, out = self.split_lists(task, SPLITS), {}
        for split in SPLITS:
            path, items = lists.files[split], lists.items[split]
            if items is None:
                raise DataError(f"split file missing: {path}. Task {task['name']} expects {self.layout} in "
                                f"{path.parent}; `python -m spt_lightning.data prepare {task['name']} --raw DIR` "
                                f"writes them.")
            if not items:
                raise DataError(f"{path} lists no images: split '{split}' of task {task['name']} is empty. "
                                f"Write it again with `python -m spt_lightning.data prepare {task['name']}`.")
            bad = next(((rel, y) for rel, y in items if not 0 <= y < task["num_classes"]), None)
            if bad is not None:
                raise DataError(f"{path}: label {bad[1]} of {bad[0]} is outside 0..{task['num_classes'] - 1} "
                                f"(task.num_classes={task['num_classes']}); fix the split file or task.num_classes")
            out[split] = FileListDataset(lists.image_dir, items, transforms[split], skip_corrupt)
        return out

    def provenance(self, task: dict[str, Any]) -> dict[str, Any]:
        """What ``prepare`` wrote beside the lists (``splits.json``), else the family's own judgement."""
        file = Path(str(task["data_dir"])) / PROVENANCE
        return json.loads(file.read_text()) if file.is_file() else self.judged(task)

    def judged(self, task: dict[str, Any]) -> dict[str, Any]:
        return super().provenance(task)
