"""VTAB-1k in the community layout (NOAH's, SPT's and VPT's forks): one txt list per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import vtab1k
from .base import SplitLists
from .split_files import SplitFiles


def _short(task: dict[str, Any]) -> str | None:
    """The VTAB-1k task a ``vtab/<name>`` task is, if it is one of the 19."""
    short = str(task["name"]).split("/", 1)[-1]
    return short if short in vtab1k.TASKS else None


class VTAB1k(SplitFiles):
    layout = "train800.txt, val200.txt, train800val200.txt and test.txt, one `relative/path label` per line"
    files = {split: vtab1k.SPLIT_FILES[vtab1k.OUR_SPLITS[split]] for split in ("train", "val", "test", "train+val")}

    def read(self, path: Path) -> list[tuple[str, int]]:
        from ..datasets import read_txt_split

        return read_txt_split(path)

    def judged(self, task: dict[str, Any]) -> dict[str, Any]:
        """By its split sizes: VTAB-1k's own, or not."""
        if (short := _short(task)) is None:
            return super().judged(task)
        root = Path(str(task["data_dir"]))
        found = {s: len(self.read(root / f)) if (root / f).is_file() else None for s, f in vtab1k.SPLIT_FILES.items()}
        expected = vtab1k.expected_sizes(short)
        return {"standard": found == expected,
                "how": "a vtab-1k folder whose split sizes match VTAB-1k's" if found == expected else
                f"a vtab-1k folder whose split sizes {found} differ from VTAB-1k's {expected}"}

    def notes(self, task: dict[str, Any], lists: SplitLists) -> list[str]:
        """A clean folder of other sizes runs: a note, not a problem."""
        if (short := _short(task)) is None:
            return []
        sizes = vtab1k.expected_sizes(short)
        return [f"{lists.files[split]} lists {len(items)} images; VTAB-1k's {split} split of {short} has "
                f"{sizes[vtab1k.OUR_SPLITS[split]]}: not the standard split (`prepare {task['name']}` writes it); "
                f"runs on it get no published number beside them"
                for split, items in lists.items.items()
                if items is not None and len(items) != sizes[vtab1k.OUR_SPLITS[split]]]

    def sizes(self, task: dict[str, Any]) -> tuple[int, int, int] | None:
        if (short := _short(task)) is None:
            return super().sizes(task)
        sizes = vtab1k.expected_sizes(short)
        return sizes["train800"], sizes["val200"], sizes["test"]
