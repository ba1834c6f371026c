"""Which splits a run used, whether they are the splits the papers used (so that a published number
may stand beside its result), and what its images are (JPEG or lossless: ``image_format``). ``prepare``
writes ``splits.json`` into the folder it fills; a folder without one is judged by its task family
(``data/families``: VTAB-1k by its split sizes)."""

from __future__ import annotations

from typing import Any

PROVENANCE = "splits.json"  # {"standard": bool, "how": "..."}


def provenance(task: dict[str, Any], fraction: float = 1.0, shots: int | None = None,
               shot_seed: int = 0) -> dict[str, Any]:
    """``{"standard": bool, "how": str}`` for the task's splits (and the part of train a run reads: a
    fraction, or ``shots`` per class with the draw's seed, also kept as ``shots`` / ``shot_seed``)."""
    from .families import family_of

    out = family_of(task).provenance(task)
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
    from .families import SPLITS, family_of

    try:
        lists = family_of(task).split_lists(task)
        if lists is None:
            return "in memory"
        items = [rel for split in SPLITS for rel, _ in lists.items.get(split) or []]  # VTAB's train+val repeats them
    except Exception:  # noqa: BLE001 - an unreadable list is reported by the run or by `data check`
        return "unknown"
    step = max(1, len(items) // sample)
    found = set()
    for rel in items[::step][:sample]:
        path = lists.image_dir / rel
        try:
            if not path.is_file():  # missing, or a FIFO that a read would hang on
                continue
            with path.open("rb") as f:
                head = f.read(4)
        except OSError:
            continue
        found.add(next((fmt for magic, fmt in MAGIC.items() if head.startswith(magic)), "other"))
    return "unknown" if not found else found.pop() if len(found) == 1 else "mixed"
