"""Which splits a run used, whether they are the splits the papers used (so that a published number
may stand beside its result), and what its images are (JPEG or lossless: ``image_format``). ``prepare``
writes ``splits.json`` into the folder it fills; a folder without one is judged by its split sizes
(VTAB-1k) or its kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROVENANCE = "splits.json"  # {"standard": bool, "how": "..."}


def provenance(task: dict[str, Any], fraction: float = 1.0, shots: int | None = None,
               shot_seed: int = 0) -> dict[str, Any]:
    """``{"standard": bool, "how": str}`` for the task's splits (and the part of train a run reads: a
    fraction, or ``shots`` per class with the draw's seed, also kept as ``shots`` / ``shot_seed``)."""
    from . import vtab1k
    from .datasets import read_txt_split

    kind = task["kind"]
    if kind in ("synthetic", "animal_mnist"):
        out = {"standard": False, "how": f"a seeded draw of {task.get('sizes')} (split_seed {task.get('split_seed')})"}
    elif kind == "folder":
        out = {"standard": False, "how": f"a custom image folder ({task.get('data_dir')})"}
    elif (file := Path(str(task["data_dir"])) / PROVENANCE).is_file():
        out = json.loads(file.read_text())
    elif kind == "vtab" and (short := task["name"].split("/", 1)[1]) in vtab1k.TASKS:
        root = Path(str(task["data_dir"]))
        found = {s: len(read_txt_split(root / f)) if (root / f).is_file() else None
                 for s, f in vtab1k.SPLIT_FILES.items()}
        expected = vtab1k.expected_sizes(short)
        out = {"standard": found == expected,
               "how": "a vtab-1k folder whose split sizes match VTAB-1k's" if found == expected else
               f"a vtab-1k folder whose split sizes {found} differ from VTAB-1k's {expected}"}
    elif kind == "fgvc":
        out = {"standard": True, "how": "FGVC json split files (VPT layout): official test split"}
    else:
        out = {"standard": False, "how": f"task kind {kind}"}
    if fraction < 1.0:
        out = {"standard": False, "how": f"{out['how']}; data.fraction={fraction} of the training split"}
    if shots is not None:
        out = {"standard": False, "how": f"{out['how']}; {shots} training image(s) per class drawn with "
                                         f"data.shot_seed={shot_seed}", "shots": shots, "shot_seed": shot_seed}
    return {**out, "images": image_format(task)}


# The first bytes of each image format: JPEG is lossy; the others the project meets are lossless.
MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG": "lossless", b"BM": "lossless", b"II*\x00": "lossless",
         b"MM\x00*": "lossless"}


def image_format(task: dict[str, Any], sample: int = 64) -> str:
    """``jpeg``, ``lossless``, ``mixed`` or ``in memory``: what the task's images are, read cheaply from the
    first bytes of up to ``sample`` files spread over its split lists (a VTAB-1k folder from NOAH's script
    holds JPEGs, one written by ``prepare`` PNGs; the difference moves some tasks by points)."""
    from .tasks import SPLIT_FILES, SPLIT_READERS, folder_items

    kind = task["kind"]
    if kind not in (*SPLIT_READERS, "folder"):
        return "in memory"
    root = Path(str(task["data_dir"]))
    try:
        if kind == "folder":
            items = [rel for s in ("train", "val", "test") for rel, _ in folder_items(root, s)[1]]
            image_dir = root
        else:
            items = [rel for name in SPLIT_FILES[kind].values() if (root / name).is_file()
                     for rel, _ in SPLIT_READERS[kind](root / name)]
            image_dir = root / task.get("image_dir", "")
    except Exception:  # noqa: BLE001 - an unreadable list is reported by the run or by `data check`
        return "unknown"
    step = max(1, len(items) // sample)
    found = set()
    for rel in items[::step][:sample]:
        path = image_dir / rel
        try:
            if not path.is_file():  # missing, or a FIFO that a read would hang on
                continue
            with path.open("rb") as f:
                head = f.read(4)
        except OSError:
            continue
        found.add(next((fmt for magic, fmt in MAGIC.items() if head.startswith(magic)), "other"))
    return "unknown" if not found else found.pop() if len(found) == 1 else "mixed"
