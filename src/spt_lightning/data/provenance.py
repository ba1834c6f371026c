"""Which splits a run used, and whether they are the splits the papers used (so that a published number
may stand beside its result). ``prepare`` writes ``splits.json`` into the folder it fills; a folder
without one is judged by its split sizes (VTAB-1k) or its kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROVENANCE = "splits.json"  # {"standard": bool, "how": "..."}


def provenance(task: dict[str, Any], fraction: float = 1.0) -> dict[str, Any]:
    """``{"standard": bool, "how": str}`` for the task's splits (and the part of train a run reads)."""
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
    return out
