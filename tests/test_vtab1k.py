"""VTAB-1k's split definitions against task_adaptation's own code, their labels, and `prepare` through
tensorflow-datasets on mock data in the source's format."""

import json

import numpy as np
import pytest

from spt_lightning.data import DataError, TaskDataModule, vtab1k
from spt_lightning.data.check import check_task
from spt_lightning.data.families import VTAB1k
from spt_lightning.data.provenance import provenance

# TFDS split sizes at the versions task_adaptation names (tfds catalogue)
TFDS_SIZES = {
    "caltech101": {"train": 3060, "test": 6084}, "cifar100": {"train": 50000, "test": 10000},
    "pets": {"train": 3680, "test": 3669}, "svhn": {"train": 73257, "test": 26032},
    "eurosat": {"train": 27000}, "resisc45": {"train": 31500}, "dsprites_loc": {"train": 737280},
    "clevr_count": {"train": 70000, "validation": 15000},
}


def _task_adaptation(task: str, n: dict) -> dict:
    """The tfds_splits of task_adaptation/data/<dataset>.py for VTAB-1k, written out as its code does."""
    if task in ("caltech101", "cifar100", "svhn", "clevr_count", "clevr_dist"):  # 90 % train, val after it
        t = 90 * n["train"] // 100
        test = "validation" if task.startswith("clevr") else "test"
        return {"train800": "train[:800]", "val200": f"train[{t}:{t + 200}]",
                "train800val200": f"train[:800]+train[{t}:{t + 200}]", "test": test}
    if task == "pets":  # oxford_iiit_pet.py: TRAIN_SPLIT_PERCENT = 80
        t = 80 * n["train"] // 100
        return {"train800": "train[:800]", "val200": f"train[{t}:{t + 200}]",
                "train800val200": f"train[:800]+train[{t}:{t + 200}]", "test": "test"}
    if task in ("eurosat", "resisc45"):  # 60 / 20 / 20
        t, v = n["train"] * 60 // 100, n["train"] * 20 // 100
        return {"train800": "train[:800]", "val200": f"train[{t}:{t + 200}]",
                "train800val200": f"train[:800]+train[{t}:{t + 200}]", "test": f"train[{t + v}:]"}
    if task.startswith("dsprites"):  # 80 / 10 / rest
        t, v = 80 * n["train"] // 100, 10 * n["train"] // 100
        return {"train800": "train[:800]", "val200": f"train[{t}:{t + 200}]",
                "train800val200": f"train[:800]+train[{t}:{t + 200}]", "test": f"train[{t + v}:]"}
    if task.startswith("smallnorb"):
        return {"train800": "train[:800]", "val200": "test[:200]", "train800val200": "train[:800]+test[:200]",
                "test": "test[50%:]"}
    return {"train800": "train[:800]", "val200": "validation[:200]",  # dtd, flowers, sun397, pcam, retino, dmlab, kitti
            "train800val200": "train[:800]+validation[:200]", "test": "test"}


@pytest.mark.parametrize("task", list(vtab1k.TASKS))
def test_split_definitions_match_task_adaptation(task):
    sizes = TFDS_SIZES.get(task, {"train": 10000, "validation": 2000, "test": 3000})
    assert vtab1k.TASKS[task].splits(sizes) == _task_adaptation(task, sizes)


def test_split_sizes_and_slices_at_the_real_tfds_sizes():
    assert vtab1k.TASKS["caltech101"].splits(TFDS_SIZES["caltech101"])["val200"] == "train[2754:2954]"
    assert vtab1k.TASKS["eurosat"].splits(TFDS_SIZES["eurosat"])["test"] == "train[21600:]"  # 27000 - 21600 = 5400
    assert 27000 - 21600 == vtab1k.TASKS["eurosat"].test_size
    assert 737280 - (589824 + 73728) == vtab1k.TASKS["dsprites_loc"].test_size
    assert len(vtab1k.TASKS) == 19 and vtab1k.expected_sizes("dtd") == {
        "train800": 800, "val200": 200, "train800val200": 1000, "test": 1880}


def test_labels_as_task_adaptation_computes_them():
    clevr = lambda *depths: {"objects": {"size": np.zeros(len(depths)), "pixel_coords": np.array([[0, 0, d] for d in depths])}}  # noqa: E731
    assert vtab1k.TASKS["clevr_count"].label(clevr(9, 9, 9, 9, 9)) == 2  # 5 objects - 3
    assert [vtab1k.TASKS["clevr_dist"].label(clevr(d, 50.0)) for d in (7.9, 8.2, 8.7, 9.2, 9.7, 12.0)] == [0, 1, 2, 3, 4, 5]
    kitti = {"objects": {"type": np.array([3, 0, 1]), "location": np.array([[0, 0, 2.0], [0, 0, 10.0], [0, 0, 30.0]])}}
    assert vtab1k.TASKS["kitti_dist"].label(kitti) == 1  # nearest vehicle at 10 m (the pedestrian at 2 m ignored)
    assert vtab1k.TASKS["kitti_dist"].label({"objects": {"type": np.array([4]), "location": np.zeros((1, 3))}}) == 3
    assert vtab1k.TASKS["dsprites_loc"].label({"label_x_position": 31}) == 15
    assert [vtab1k.TASKS["dsprites_ori"].label({"label_orientation": o}) for o in (0, 2, 3, 39)] == [0, 0, 1, 15]


@pytest.mark.slow
@pytest.mark.parametrize("task", [t for t in vtab1k.TASKS if t not in ("pets", "kitti_dist")])
def test_prepare_through_tensorflow_datasets_mock(task, tmp_path, monkeypatch):
    """Mock data (TFDS's own helper, every feature in its real format) ignores slices: each split yields
    the mock's examples; the definitions' slices are pinned above."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from spt_lightning.data import prepare

    monkeypatch.setattr(prepare, "_split_sizes", lambda builder: {"train": 5000, "validation": 1000, "test": 2000})
    out = tmp_path / task
    with tfds.testing.mock_data(num_examples=12):
        counts = prepare.prepare_vtab(task, None, out)
    assert counts == {"train800": 12, "val200": 12, "test": 12, "train800val200": 24}
    lists = {s: (out / f).read_text().splitlines() for s, f in vtab1k.SPLIT_FILES.items()}
    assert lists["train800val200"] == lists["train800"] + lists["val200"]
    record = json.loads((out / "splits.json").read_text())
    assert record["standard"] is False and "differ from VTAB-1k" in record["how"]  # 12 images, not 800
    assert "train[:800]" in record["how"]
    num_classes = max(int(line.split()[1]) for ls in lists.values() for line in ls) + 1
    spec = {"name": f"vtab/{task}", "family": VTAB1k(), "num_classes": num_classes, "data_dir": str(out)}
    dm = TaskDataModule(spec, 32, [0.5] * 3, [0.5] * 3, batch_size=24, num_workers=0, protocol="final")
    dm.setup("fit")
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (24, 3, 32, 32)
    with pytest.raises(DataError, match="--force"):
        prepare.prepare_vtab(task, None, out)


def test_prepare_refuses_what_it_cannot_do_faithfully(tmp_path, monkeypatch):
    from spt_lightning.data import prepare

    with pytest.raises(DataError, match="unknown VTAB-1k task 'cifar'"):
        prepare.prepare_vtab("cifar", None, tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match=r"spt-lightning\[vtab\]"):
        prepare.prepare_vtab("dtd", None, tmp_path)


def _folder(root, sizes):
    for split, n in sizes.items():
        (root / vtab1k.SPLIT_FILES[split]).write_text("".join(f"images/{split}/{i}.png 0\n" for i in range(n)))


def test_check_and_provenance_compare_a_folder_with_the_standard_sizes(tmp_path):
    task = {"name": "vtab/kitti_dist", "family": VTAB1k(), "num_classes": 4, "data_dir": str(tmp_path)}
    _folder(tmp_path, vtab1k.expected_sizes("kitti_dist"))
    assert provenance(task) == {"standard": True, "how": "a vtab-1k folder whose split sizes match VTAB-1k's",
                                "images": "unknown"}  # (no image files written here)
    assert provenance(task, fraction=0.5)["standard"] is False
    _folder(tmp_path, {**vtab1k.expected_sizes("kitti_dist"), "test": 700})
    assert provenance(task)["standard"] is False
    report = check_task(task)  # other sizes: a note, not a problem (a clean small folder still checks ok)
    assert any("test.txt lists 700 images; VTAB-1k's test split of kitti_dist has 711" in n for n in report["notes"])
    assert not any("lists 700 images" in p for p in report["problems"])
    (tmp_path / "splits.json").write_text(json.dumps({"standard": False, "how": "a seeded draw"}))
    assert provenance(task)["how"] == "a seeded draw"


@pytest.mark.parametrize("formats, expected", [(["PNG"], "lossless"), (["JPEG"], "jpeg"), (["PNG", "JPEG"], "mixed")])
def test_provenance_names_the_image_format_and_check_notes_jpeg(tmp_path, capsys, formats, expected):
    from PIL import Image

    from spt_lightning.data.__main__ import main as data_main

    root = tmp_path / "vtab-1k" / "dtd"
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(6):
        fmt = formats[i % len(formats)]
        name = f"images/{i}.{fmt.lower()}"
        Image.new("RGB", (20, 30), (i * 30, 0, 0)).save(root / name, format=fmt)
        lines.append(f"{name} {i % 2}")
    for split in vtab1k.SPLIT_FILES.values():
        (root / split).write_text("\n".join(lines) + "\n")
    task = {"name": "vtab/dtd", "family": VTAB1k(), "num_classes": 47, "data_dir": str(root)}
    assert provenance(task)["images"] == expected
    assert data_main(["check", "task=vtab/dtd", f"paths.data_dir={tmp_path}"]) == 1  # (overlapping splits here)
    out = capsys.readouterr().out
    assert f"images: {expected}" in out and ("JPEG re-encoding" in out) == (expected != "lossless")
