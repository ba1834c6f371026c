"""Validate a task's data folder without training: what is missing, mislabelled or unreadable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from .datasets import UNREADABLE, open_image
from .families import family_of


def _readable(path: Path) -> str | None:
    try:
        with open_image(path) as im:
            im.verify()
        return None
    except UNREADABLE as err:
        return str(err)


def check_task(task: dict[str, Any]) -> dict[str, Any]:
    """Counts per split and a list of problems (each names a file and what is wrong with it)."""
    family = family_of(task)
    lists = family.split_lists(task)
    if lists is None:
        raise DataError(f"task {task['name']} ({type(family).__name__}) is built in memory: nothing to check on disk")
    files, image_dir, num_classes = lists.files, lists.image_dir, task.get("num_classes") or 10**9
    problems, notes, counts = [], family.notes(task, lists), {}
    for split, items in lists.items.items():
        if items is None:
            problems.append(f"missing: {files[split]}")
            continue
        counts[split] = len(items)
        if not items:
            problems.append(f"empty split: {files[split]} lists no images")
        for rel, label in items:
            path = image_dir / rel
            if not 0 <= label < num_classes:
                problems.append(f"label {label} outside 0..{num_classes - 1}: {path} ({files[split].name})")
            if not path.is_file():
                problems.append(f"missing image: {path} ({files[split].name})")
            elif (err := _readable(path)) is not None:
                problems.append(f"unreadable image: {path}: {err}")
    train, val, test = ({rel for rel, _ in lists.items.get(s) or []} for s in ("train", "val", "test"))
    for a, b, common in (("train", "test", train & test), ("train", "val", train & val), ("val", "test", val & test)):
        if common:
            problems.append(f"{len(common)} images are in both {a} and {b} (e.g. {sorted(common)[0]})")
    from .provenance import image_format

    images = image_format(task)
    if images in ("jpeg", "mixed"):
        notes.append(f"the images are {images}: JPEG re-encoding moves some VTAB-1k tasks by points against a "
                     f"lossless folder (docs/reference.md#data); report marks published numbers beside such runs")
    return {"task": task["name"], "root": str(lists.root), "counts": counts, "images": images, "notes": notes,
            "problems": problems}
