"""FGVC (CUB-200-2011, NABirds, Oxford Flowers, Stanford Dogs, Stanford Cars) in VPT's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .split_files import SplitFiles

# VPT's FGVC splits (the {train,val,test}.json its repository publishes; its paper's appendix lists them):
# images per split, what an FGVC run reads when its folder is not on this machine (tune --dry-run).
SIZES = {"fgvc/cub": (5394, 600, 5794), "fgvc/nabirds": (21536, 2393, 24633), "fgvc/flowers": (1020, 1020, 6149),
         "fgvc/dogs": (10800, 1200, 8580), "fgvc/cars": (7329, 815, 8041)}


class FGVC(SplitFiles):
    layout = 'train.json, val.json and test.json, each {"relative/path.jpg": class_id} with paths under task.image_dir'
    files = {"train": "train.json", "val": "val.json", "test": "test.json"}

    def read(self, path: Path) -> list[tuple[str, int]]:
        from ..datasets import read_json_split

        return read_json_split(path)

    def judged(self, task: dict[str, Any]) -> dict[str, Any]:
        return {"standard": True, "how": "FGVC json split files (VPT layout): official test split"}

    def sizes(self, task: dict[str, Any]) -> tuple[int, int, int] | None:
        return SIZES.get(task["name"]) or super().sizes(task)
