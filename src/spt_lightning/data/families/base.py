"""What every task family is asked: its datasets, its split lists on disk, where its splits come from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitLists:
    """A task's splits as they lie on disk (``root``: the task's folder): per split its list (a file, or a
    folder), and its ``(path relative to image_dir, label)`` items (``None``: the list is missing)."""

    root: Path
    image_dir: Path
    files: dict[str, Path]
    items: dict[str, list[tuple[str, int]] | None]


class Family:
    """How a task's images are stored. A task names its family in its YAML (``family: {_target_: ...}``)
    and keeps the data's own facts (name, classes, folder, sizes) beside it; the family reads them.
    Families in memory list nothing on disk (``split_lists`` is ``None``: ``data check`` says so)."""

    layout = ""  # what task.data_dir holds, as error messages say it

    def datasets(self, task: dict[str, Any], transforms: dict, skip_corrupt: bool = False) -> dict:
        """``{"train", "val", "test"}`` datasets, each with its split's transform."""
        raise NotImplementedError

    def split_lists(self, task: dict[str, Any]) -> SplitLists | None:
        return None

    def provenance(self, task: dict[str, Any]) -> dict[str, Any]:
        """``{"standard": bool, "how": str}``: whether these are the splits the papers used."""
        return {"standard": False, "how": f"task family {type(self).__name__}"}

    def notes(self, task: dict[str, Any], lists: SplitLists) -> list[str]:
        """What ``data check`` should say of a clean folder that is not the standard one."""
        return []

    def sizes(self, task: dict[str, Any]) -> tuple[int, int, int] | None:
        """``(train, val, test)`` images, without reading the data (``tune --dry-run``); ``None``: unknown."""
        sizes = task.get("sizes")
        return (sizes["train"], sizes["val"], sizes["test"]) if sizes else None

    def num_classes(self, task: dict[str, Any]) -> int:
        """The classes of a task whose ``num_classes`` is null."""
        raise DataError(f"task {task['name']}: task.num_classes is not set; set it to the number of classes")


def require_data_dir(task: dict[str, Any], layout: str = "") -> Path:
    root = Path(str(task["data_dir"])).expanduser().absolute()
    if not root.is_dir():
        holds = f"\nThe folder holds {layout}." if layout else ""
        raise DataError(
            f"data folder for task {task['name']} not found: {root}\n"
            f"Set paths.data_dir=/your/datasets (or the SPT_DATA_DIR environment variable) so that it holds "
            f"{root.name}/, or point task.data_dir=/path/to/{root.name} at the folder itself.{holds}"
        )
    return root
