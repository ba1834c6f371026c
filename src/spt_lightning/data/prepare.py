"""Write the split files a task reads, from the official downloads' own layouts.

FGVC (VPT style): ``{train,val,test}.json`` with ``{"relative/path.jpg": class_id}`` written into the
dataset folder. Where the official data has no validation split (CUB, NABirds, Stanford Dogs, Stanford
Cars) a seeded 10% of the official train split becomes val, per class, as VPT did.

VTAB-1k: the four split lists of the community ``vtab-1k`` layout, from VTAB's own split definitions
(``vtab1k.py``) read through tensorflow-datasets.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from PIL import Image

from ..files import write_atomically
from . import vtab1k
from .datasets import DataError
from .provenance import PROVENANCE

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
    how = (f"fgvc/{name}: the official test split; train + val = the official train split (val "
           + ("official)" if name == "flowers" else f"a seeded {VAL_FRACTION:.0%} of each class, seed {seed})"))
    write_atomically(out / PROVENANCE, lambda tmp: tmp.write_text(json.dumps({"standard": True, "how": how}, indent=2)))
    return {split: len(splits[split]) for split in ("train", "val", "test")}


# ---- VTAB-1k: VTAB's own split definitions, read through tensorflow-datasets -----------------------------
def _rgb(image: np.ndarray, gray: int) -> Image.Image:
    if gray:
        image = np.repeat(image[..., :1] * (255 if gray == 255 else 1), 3, axis=-1)
    return Image.fromarray(np.asarray(image, dtype=np.uint8))


def _split_sizes(builder) -> dict[str, int]:
    """The TFDS dataset's split sizes, from which task_adaptation's slices are computed."""
    return {split: info.num_examples for split, info in builder.info.splits.items()}


def prepare_vtab(name: str, raw: Path | None, out: Path, force: bool = False) -> dict[str, int]:
    """Write ``images/`` and the four split lists of VTAB-1k task ``name`` into ``out``: train800, val200
    and test as task_adaptation slices them from the TFDS dataset (``raw``: its TFDS ``data_dir``;
    downloaded there when absent and the dataset can be), train800val200 = train800 + val200."""
    if name not in vtab1k.TASKS:
        raise DataError(f"unknown VTAB-1k task '{name}'; choose one of {', '.join(vtab1k.TASKS)}")
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError("prepare vtab/... reads VTAB's own splits through tensorflow-datasets: "
                        "pip install 'spt-lightning[vtab]'") from err
    out = Path(out)
    lists = {split: out / file for split, file in vtab1k.SPLIT_FILES.items()}
    _refuse_overwrite([*lists.values(), out / PROVENANCE], force)
    spec = vtab1k.TASKS[name]
    try:
        builder = tfds.builder(spec.tfds, data_dir=None if raw is None else str(raw))
        builder.download_and_prepare()
    except AssertionError as err:  # TFDS: "cannot be loaded at version X, only: Y"
        raise DataError(f"tensorflow-datasets {tfds.__version__} cannot build {spec.tfds}, the version VTAB's "
                        f"definitions name ({err}); another version may order its examples differently. Use a "
                        f"tensorflow-datasets release that still builds it, or a community vtab-1k folder.") from err
    except Exception as err:  # not there and not downloadable here, or a manual download missing
        raise DataError(f"tensorflow-datasets cannot provide {spec.tfds} (data_dir {raw}): {type(err).__name__}: "
                        f"{err}. Build it first where it can be downloaded (`tfds build {spec.tfds.split(':')[0]}`, "
                        f"manual downloads in <data_dir>/downloads/manual), then pass that data_dir as --raw.") from err
    expressions = spec.splits(_split_sizes(builder))
    written: dict[str, list[str]] = {}
    for split in ("train800", "val200", "test"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        rows = []
        for i, example in enumerate(tfds.as_numpy(builder.as_dataset(split=expressions[split], shuffle_files=False))):
            rel = f"images/{split}/{i:06d}.png"
            _rgb(example["image"], spec.gray).save(out / rel)
            rows.append(f"{rel} {spec.label(example)}")
        written[split] = rows
    written["train800val200"] = written["train800"] + written["val200"]
    for split, path in lists.items():
        text = "\n".join(written[split]) + "\n"
        write_atomically(path, lambda tmp: tmp.write_text(text))
    counts = {split: len(rows) for split, rows in written.items()}
    standard = counts == vtab1k.expected_sizes(name)
    record = {"standard": standard, "how": f"VTAB-1k splits as task_adaptation defines them, from TFDS "
              f"{builder.info.full_name}: " + ", ".join(f"{s} = {e}" for s, e in expressions.items())
              + ("" if standard else f"; sizes {counts} differ from VTAB-1k's {vtab1k.expected_sizes(name)}")}
    write_atomically(out / PROVENANCE, lambda tmp: tmp.write_text(json.dumps(record, indent=2)))
    return counts
