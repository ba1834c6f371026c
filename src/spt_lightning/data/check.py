"""Validate a task's data folder without training: what is missing, mislabelled or unreadable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import vtab1k
from .datasets import UNREADABLE, DataError, open_image
from .tasks import SPLIT_FILES, SPLIT_READERS, SPLITS, folder_items, require_data_dir


def _readable(path: Path) -> str | None:
    try:
        with open_image(path) as im:
            im.verify()
        return None
    except UNREADABLE as err:
        return str(err)


def check_task(task: dict[str, Any]) -> dict[str, Any]:
    """Counts per split and a list of problems (each names a file and what is wrong with it)."""
    if task["kind"] not in (*SPLIT_READERS, "folder"):
        raise DataError(f"task {task['name']} ({task['kind']}) is built in memory: nothing to check on disk")
    root = require_data_dir(task)
    if task["kind"] == "folder":
        lists = {s: folder_items(root, s)[1] if (root / s).is_dir() else None for s in SPLITS}
        image_dir, num_classes = root, task.get("num_classes") or 10**9
        files = {s: root / s for s in lists}
    else:
        names = dict(SPLIT_FILES[task["kind"]])
        if task["kind"] == "vtab":
            names["train+val"] = vtab1k.SPLIT_FILES[vtab1k.OUR_SPLITS["train+val"]]
        files = {s: root / n for s, n in names.items()}
        lists = {s: SPLIT_READERS[task["kind"]](p) if p.is_file() else None for s, p in files.items()}
        image_dir, num_classes = root / task.get("image_dir", ""), task["num_classes"]
    problems, notes, counts = [], [], {}
    if task["kind"] == "vtab" and (short := task["name"].split("/", 1)[1]) in vtab1k.TASKS:
        sizes = vtab1k.expected_sizes(short)
        expected = {split: sizes[vtab1k.OUR_SPLITS[split]] for split in names}
        for split, size in expected.items():  # a clean folder of other sizes runs: a note, not a problem
            if lists.get(split) is not None and len(lists[split]) != size:
                notes.append(f"{files[split]} lists {len(lists[split])} images; VTAB-1k's {split} split of "
                             f"{short} has {size}: not the standard split (`prepare {task['name']}` writes it); "
                             f"runs on it get no published number beside them")
    for split, items in lists.items():
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
    train, test = ({rel for rel, _ in lists.get(s) or []} for s in ("train", "test"))
    val = {rel for rel, _ in lists.get("val") or []}
    for a, b, common in (("train", "test", train & test), ("train", "val", train & val), ("val", "test", val & test)):
        if common:
            problems.append(f"{len(common)} images are in both {a} and {b} (e.g. {sorted(common)[0]})")
    from .provenance import image_format

    images = image_format(task)
    if images in ("jpeg", "mixed"):
        notes.append(f"the images are {images}: JPEG re-encoding moves some VTAB-1k tasks by points against a "
                     f"lossless folder (docs/reference.md#data); report marks published numbers beside such runs")
    return {"task": task["name"], "root": str(root), "counts": counts, "images": images, "notes": notes,
            "problems": problems}
