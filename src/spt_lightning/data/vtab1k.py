"""VTAB-1k's splits as VTAB defines them, and how a folder is known to hold them.

Transcribed from google-research/task_adaptation (``task_adaptation/data/<dataset>.py``): for each of the
19 tasks, the TFDS dataset it loads, which slice of which TFDS split is train800, val200 and test (in
TFDS's own example order), and how the label is read. ``prepare`` reads them through
tensorflow-datasets (the ``vtab`` extra); the community ``vtab-1k`` folders (NOAH, SPT, VPT forks) were
written from the same definitions, and ``check`` compares a folder's split sizes with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SPLIT_FILES = {"train800": "train800.txt", "val200": "val200.txt", "train800val200": "train800val200.txt",
               "test": "test.txt"}
# The datamodule's splits (data.protocol: train, val; final trains on train + val) in VTAB-1k's names.
OUR_SPLITS = {"train": "train800", "val": "val200", "test": "test", "train+val": "train800val200"}


def _label(example: dict) -> int:
    return int(example["label"])


def _clevr_count(example: dict) -> int:  # clevr.py: _count_preprocess_fn
    return len(example["objects"]["size"]) - 3


def _binned(value: float, thresholds: list[float]) -> int:
    """``tf.reduce_max(tf.where((thrs - value) < 0))``: the last threshold below ``value``."""
    return int(np.flatnonzero(np.asarray(thresholds) - value < 0).max())


def _clevr_distance(example: dict) -> int:  # clevr.py: _closest_object_preprocess_fn
    return _binned(float(np.min(example["objects"]["pixel_coords"][:, 2])), [0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])


def _kitti_distance(example: dict) -> int:  # kitti.py: _closest_vehicle_distance_pp (Car, Van, Truck: type < 3)
    objects = example["objects"]
    depths = np.asarray(objects["location"]).reshape(-1, 3)[:, 2][np.asarray(objects["type"]) < 3]
    return _binned(float(np.min(np.append(depths, 1000.0))), [-100.0, 8.0, 20.0, 999.0])


def _divided(key: str, factor: float) -> Callable[[dict], int]:  # dsprites.py: floordiv by the class division
    return lambda example: int(np.floor(float(example[key]) / factor))


def _attribute(key: str) -> Callable[[dict], int]:  # smallnorb.py
    return lambda example: int(example[key])


@dataclass(frozen=True)
class Vtab1k:
    """One task's definition.

    Args:
        tfds: The TFDS name and version pattern that task_adaptation loads.
        val_from: Where val200 comes from: ``train`` (200 examples from ``percents[0]``% of train on),
            ``validation`` or ``test`` (their first 200).
        test: The test split: a TFDS split name, or ``rest`` (train after ``sum(percents)``% of it).
        percents: Percentages of train that task_adaptation's train (and val) splits take.
        label: The label of one example (a dict of numpy values, as ``tfds.as_numpy`` yields).
        test_size: Test examples at the TFDS versions task_adaptation names.
        gray: Single-channel images, tiled to RGB (dSprites also scaled from {0, 1} to {0, 255}).
    """

    tfds: str
    val_from: str
    test: str
    test_size: int
    percents: tuple[int, ...] = ()
    label: Callable[[dict], int] = _label
    gray: int = 0  # 0: RGB; 1: tile; 255: tile and scale {0, 1} -> {0, 255}

    def splits(self, counts: dict[str, int]) -> dict[str, str]:
        """The TFDS split expressions of train800, val200, train800val200 and test, as task_adaptation
        writes them, given the TFDS split sizes ``counts`` (``{"train": n, ...}``)."""
        if self.val_from == "train":
            start = self.percents[0] * counts["train"] // 100
            val = f"train[{start}:{start + 200}]"
        else:
            val = f"{self.val_from}[:200]"
        if self.test == "rest":
            test = f"train[{sum(p * counts['train'] // 100 for p in self.percents)}:]"
        else:
            test = self.test
        return {"train800": "train[:800]", "val200": val, "train800val200": f"train[:800]+{val}", "test": test}


TASKS: dict[str, Vtab1k] = {
    "caltech101": Vtab1k("caltech101:3.*.*", "train", "test", 6084, (90,)),
    "cifar100": Vtab1k("cifar100:3.*.*", "train", "test", 10000, (90,)),
    "dtd": Vtab1k("dtd:3.*.*", "validation", "test", 1880),
    "flowers102": Vtab1k("oxford_flowers102:2.*.*", "validation", "test", 6149),
    "pets": Vtab1k("oxford_iiit_pet:3.*.*", "train", "test", 3669, (80,)),
    "svhn": Vtab1k("svhn_cropped:3.*.*", "train", "test", 26032, (90,)),
    "sun397": Vtab1k("sun397/tfds:4.*.*", "validation", "test", 21750),
    "patch_camelyon": Vtab1k("patch_camelyon:2.*.*", "validation", "test", 32768),
    "eurosat": Vtab1k("eurosat/rgb:2.*.*", "train", "rest", 5400, (60, 20)),
    "resisc45": Vtab1k("resisc45:3.*.*", "train", "rest", 6300, (60, 20)),
    "retinopathy": Vtab1k("diabetic_retinopathy_detection/btgraham-300:3.*.*", "validation", "test", 42670),
    "clevr_count": Vtab1k("clevr:3.*.*", "train", "validation", 15000, (90,), _clevr_count),
    "clevr_dist": Vtab1k("clevr:3.*.*", "train", "validation", 15000, (90,), _clevr_distance),
    "dmlab": Vtab1k("dmlab:2.0.1", "validation", "test", 22735),
    "kitti_dist": Vtab1k("kitti:3.1.0", "validation", "test", 711, (), _kitti_distance),
    "dsprites_loc": Vtab1k("dsprites:2.*.*", "train", "rest", 73728, (80, 10), _divided("label_x_position", 32 / 16),
                           gray=255),
    "dsprites_ori": Vtab1k("dsprites:2.*.*", "train", "rest", 73728, (80, 10), _divided("label_orientation", 40 / 16),
                           gray=255),
    "smallnorb_azi": Vtab1k("smallnorb:2.*.*", "test", "test[50%:]", 12150, (), _attribute("label_azimuth"), gray=1),
    "smallnorb_ele": Vtab1k("smallnorb:2.*.*", "test", "test[50%:]", 12150, (), _attribute("label_elevation"),
                            gray=1),
}


def expected_sizes(task: str) -> dict[str, int]:
    """The number of examples in each split file of a VTAB-1k task folder."""
    return {"train800": 800, "val200": 200, "train800val200": 1000, "test": TASKS[task].test_size}
