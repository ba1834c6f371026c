"""Write the split files a task reads, from the official downloads' own layouts.

FGVC (VPT style): ``{train,val,test}.json`` with ``{"relative/path.jpg": class_id}`` written into the
dataset folder. Where the official data has no validation split (CUB, NABirds, Stanford Dogs, Stanford
Cars) a seeded 10% of the official train split becomes val, per class, as VPT did.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..files import write_atomically
from .datasets import DataError

Items = list[tuple[str, int]]
VAL_FRACTION = 0.1


def _lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path} not found: is --raw the folder of the official download?")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _loadmat(path: Path) -> dict:
    from scipy.io import loadmat

    if not path.is_file():
        raise DataError(f"{path} not found: is --raw the folder of the official download?")
    return loadmat(str(path), squeeze_me=True)


def _refuse_overwrite(paths, force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise DataError(f"{', '.join(existing)} exist already; pass --force to overwrite them")


def _dense(labels: list[int]) -> dict[int, int]:
    """Official class ids (1-based or sparse) → 0 .. C-1, in sorted order."""
    return {c: i for i, c in enumerate(sorted(set(labels)))}


def _cub_like(raw: Path) -> dict[str, Items]:
    """CUB-200-2011 and NABirds: images.txt, image_class_labels.txt, train_test_split.txt (id → 1 = train)."""
    paths = dict(_lines(raw / "images.txt"))
    labels = {i: int(c) for i, c in _lines(raw / "image_class_labels.txt")}
    is_train = {i: f == "1" for i, f in _lines(raw / "train_test_split.txt")}
    dense = _dense(list(labels.values()))
    out: dict[str, Items] = {"train": [], "test": []}
    for image_id, rel in paths.items():
        out["train" if is_train[image_id] else "test"].append((rel, dense[labels[image_id]]))
    return out


def _flowers(raw: Path) -> dict[str, Items]:
    """Oxford Flowers 102: imagelabels.mat (labels 1..102) + setid.mat (trnid/valid/tstid), images jpg/image_%05d.jpg."""
    labels = _loadmat(raw / "imagelabels.mat")["labels"]
    setid = _loadmat(raw / "setid.mat")
    item = lambda i: (f"jpg/image_{int(i):05d}.jpg", int(labels[int(i) - 1]) - 1)  # noqa: E731
    return {split: [item(i) for i in np.atleast_1d(setid[key])]
            for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))}


def _dogs(raw: Path) -> dict[str, Items]:
    """Stanford Dogs: train_list.mat / test_list.mat (file_list relative to Images/, labels 1..120)."""
    def read(name):
        mat = _loadmat(raw / name)
        return [(str(f), int(c) - 1) for f, c in zip(np.atleast_1d(mat["file_list"]), np.atleast_1d(mat["labels"]))]

    return {"train": read("train_list.mat"), "test": read("test_list.mat")}


def _cars(raw: Path) -> dict[str, Items]:
    """Stanford Cars: devkit/cars_train_annos.mat + cars_test_annos_withlabels.mat (fname, class 1..196)."""
    def read(name, folder):
        annos = np.atleast_1d(_loadmat(raw / name)["annotations"])
        return [(f"{folder}/{a['fname']}", int(a["class"]) - 1) for a in annos]

    test = raw / "cars_test_annos_withlabels.mat"
    if not test.is_file():
        test = raw / "devkit" / "cars_test_annos_withlabels.mat"
    return {"train": read(Path("devkit") / "cars_train_annos.mat", "cars_train"),
            "test": read(test.relative_to(raw), "cars_test")}


FGVC_READERS: dict[str, Callable[[Path], dict[str, Items]]] = {
    "cub": _cub_like, "nabirds": _cub_like, "flowers": _flowers, "dogs": _dogs, "cars": _cars,
}


def carve_val(train: Items, fraction: float, seed: int) -> tuple[Items, Items]:
    """A seeded ``fraction`` of each class moves from train to val (at least one image per class with 2+)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, (_, label) in enumerate(train):
        by_class[label].append(i)
    rng = np.random.default_rng(seed)
    val_idx = set()
    for label in sorted(by_class):
        idx = by_class[label]
        take = int(round(fraction * len(idx))) or (1 if len(idx) > 1 else 0)
        val_idx.update(rng.choice(idx, size=take, replace=False).tolist())
    return ([x for i, x in enumerate(train) if i not in val_idx], [x for i, x in enumerate(train) if i in val_idx])


def prepare_fgvc(name: str, raw: Path, out: Path | None = None, seed: int = 0, force: bool = False) -> dict[str, int]:
    """Write ``{train,val,test}.json`` for FGVC task ``name`` from its official layout under ``raw``."""
    if name not in FGVC_READERS:
        raise DataError(f"unknown FGVC task '{name}'; choose one of {', '.join(FGVC_READERS)}")
    raw, out = Path(raw), Path(out or raw)
    if not raw.is_dir():
        raise DataError(f"--raw {raw} is not a folder")
    targets = {s: out / f"{s}.json" for s in ("train", "val", "test")}
    _refuse_overwrite(targets.values(), force)
    splits = FGVC_READERS[name](raw)
    if "val" not in splits:
        splits["train"], splits["val"] = carve_val(splits["train"], VAL_FRACTION, seed)
    for split, path in targets.items():
        text = json.dumps(dict(splits[split]), indent=0)
        write_atomically(path, lambda tmp: tmp.write_text(text))
    return {split: len(splits[split]) for split in ("train", "val", "test")}


# ---- VTAB-1k from raw datasets that torchvision reads from disk -------------------------------------------
# Sampling (seeded, documented): train800 from the official train split; val200 from the official val
# split where there is one, else from the rest of train; test = the whole official test split. Datasets
# with no official test split keep a seeded 20% of all images as test (VTAB's convention for EuroSAT).
VTAB_SIZES = {"train": 800, "val": 200}
NO_TEST_FRACTION = 0.2


def _tv(name: str, **kwargs):
    def build(root: Path, split: str | None):
        import torchvision.datasets as tvd

        args = dict(kwargs)
        if split is not None:
            args.update({"train": split == "train"} if name in ("CIFAR100",) else {"split": split})
        return getattr(tvd, name)(str(root), download=False, **args)

    return build


# task → (torchvision builder, {our split: official split or None})
VTAB_SOURCES: dict[str, tuple[Callable, dict[str, str | None]]] = {
    "cifar100": (_tv("CIFAR100"), {"train": "train", "test": "test"}),
    "svhn": (_tv("SVHN"), {"train": "train", "test": "test"}),
    "dtd": (_tv("DTD"), {"train": "train", "val": "val", "test": "test"}),
    "flowers102": (_tv("Flowers102"), {"train": "train", "val": "val", "test": "test"}),
    "pets": (_tv("OxfordIIITPet"), {"train": "trainval", "test": "test"}),
    "eurosat": (_tv("EuroSAT"), {"all": None}),
}


def _load(builder, root: Path, split: str | None, task: str):
    try:
        return builder(root, split)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DataError(f"torchvision cannot read vtab/{task} from {root}: {err}. --raw must be the folder "
                        f"that torchvision's own download would create (its root).") from err


def prepare_vtab(name: str, raw: Path, out: Path, seed: int = 0, force: bool = False) -> dict[str, int]:
    """Write ``images/`` and the four split lists of VTAB-1k task ``name`` into ``out``."""
    if name not in VTAB_SOURCES:
        raise DataError(f"prepare vtab/{name} is not supported (torchvision cannot read it from disk); supported: "
                        f"{', '.join(VTAB_SOURCES)}. For the others use the community vtab-1k folders.")
    out = Path(out)
    lists = {s: out / f"{s}.txt" for s in ("train800", "val200", "train800val200", "test")}
    _refuse_overwrite(lists.values(), force)
    builder, splits = VTAB_SOURCES[name]
    rng = np.random.default_rng(seed)
    pools = {ours: _load(builder, Path(raw), official, name) for ours, official in splits.items()}
    if "all" in pools:  # no official splits: a seeded test part first
        everything = pools.pop("all")
        order = rng.permutation(len(everything))
        cut = int(round(NO_TEST_FRACTION * len(everything)))
        pools = {"test": (everything, order[:cut]), "train": (everything, order[cut:])}
    else:
        pools = {s: (ds, np.arange(len(ds))) for s, ds in pools.items()}
    train_ds, train_idx = pools["train"]
    picked = rng.permutation(train_idx)
    chosen = {"train800": (train_ds, picked[: VTAB_SIZES["train"]])}
    if "val" in pools:
        val_ds, val_idx = pools["val"]
        chosen["val200"] = (val_ds, rng.permutation(val_idx)[: VTAB_SIZES["val"]])
    else:
        chosen["val200"] = (train_ds, picked[VTAB_SIZES["train"] : VTAB_SIZES["train"] + VTAB_SIZES["val"]])
    chosen["test"] = pools["test"]
    if len(chosen["train800"][1]) < VTAB_SIZES["train"] or len(chosen["val200"][1]) < VTAB_SIZES["val"]:
        raise DataError(f"vtab/{name} under {raw} has too few training images for 800 + 200")
    written: dict[str, list[str]] = {}
    for split, (dataset, indices) in chosen.items():
        folder = out / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i in indices.tolist():
            image, label = dataset[i]
            rel = f"images/{split}/{i:06d}.png"
            image.convert("RGB").save(out / rel)
            rows.append(f"{rel} {int(label)}")
        written[split] = rows
    written["train800val200"] = written["train800"] + written["val200"]
    for split, path in lists.items():
        text = "\n".join(written[split]) + "\n"
        write_atomically(path, lambda tmp: tmp.write_text(text))
    return {split: len(rows) for split, rows in written.items()}
