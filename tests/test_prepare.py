"""Tiny datasets in each official raw layout -> prepare -> load round trip; check; bad inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from spt_lightning.data import DataError, TaskDataModule
from spt_lightning.data.check import check_task
from spt_lightning.data.families import FGVC
from spt_lightning.data.prepare import prepare_fgvc


def _image(path, colour=(120, 30, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), colour).save(path)


def _cub_like(raw, class_ids, per_class=6):
    rows, labels, split = [], [], []
    for c in class_ids:
        for j in range(per_class):
            image_id = len(rows) + 1
            rel = f"{c:03d}.class/{j}.jpg"
            _image(raw / "images" / rel)
            rows.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {int(j < 4)}")
    for name, lines in (("images.txt", rows), ("image_class_labels.txt", labels), ("train_test_split.txt", split)):
        (raw / name).write_text("\n".join(lines) + "\n")


def _flowers(raw):
    labels = np.array([1, 1, 2, 2, 3, 3, 1, 2, 3])
    for i in range(1, 10):
        _image(raw / "jpg" / f"image_{i:05d}.jpg")
    savemat(raw / "imagelabels.mat", {"labels": labels})
    savemat(raw / "setid.mat", {"trnid": np.array([1, 3, 5]), "valid": np.array([2, 4, 6]), "tstid": np.array([7, 8, 9])})


def _dogs(raw):
    def write(name, files, labels):
        for f in files:
            _image(raw / "Images" / f)
        savemat(raw / name, {"file_list": np.array(files, dtype=object), "labels": np.array(labels)})

    write("train_list.mat", [f"n0{c}-breed/{j}.jpg" for c in (1, 2) for j in range(5)], [c for c in (1, 2) for _ in range(5)])
    write("test_list.mat", [f"n0{c}-breed/t{j}.jpg" for c in (1, 2) for j in range(2)], [c for c in (1, 2) for _ in range(2)])


def _cars(raw):
    def write(name, folder, n):
        rec = np.zeros(n, dtype=[("fname", object), ("class", np.int32)])
        for i in range(n):
            rec[i] = (f"{i:05d}.jpg", 1 + i % 3)
            _image(raw / folder / f"{i:05d}.jpg")
        savemat(raw / "devkit" / name, {"annotations": rec})

    (raw / "devkit").mkdir(parents=True)
    write("cars_train_annos.mat", "cars_train", 12)
    write("cars_test_annos_withlabels.mat", "cars_test", 6)


LAYOUTS = {
    # task: (builder, classes, image_dir, expected counts train/val/test)
    "cub": (lambda raw: _cub_like(raw, [1, 2, 3]), 3, "images", (9, 3, 6)),
    "nabirds": (lambda raw: _cub_like(raw, [295, 300, 1010]), 3, "images", (9, 3, 6)),
    "flowers": (_flowers, 3, "", (3, 3, 3)),
    "dogs": (_dogs, 2, "Images", (8, 2, 4)),
    "cars": (_cars, 3, "", (9, 3, 6)),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_fgvc_prepare_round_trip(tmp_path, name):
    build, classes, image_dir, expected = LAYOUTS[name]
    raw = tmp_path / name
    raw.mkdir()
    build(raw)
    counts = prepare_fgvc(name, raw, seed=0)
    assert (counts["train"], counts["val"], counts["test"]) == expected
    splits = {s: json.loads((raw / f"{s}.json").read_text()) for s in ("train", "val", "test")}
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["train"]) & set(splits["test"])
    assert {y for s in splits.values() for y in s.values()} == set(range(classes))  # dense 0..C-1 labels
    task = {"name": f"fgvc/{name}", "family": FGVC(), "num_classes": classes, "data_dir": str(raw),
            "image_dir": image_dir, "transform": "crop"}
    dm = TaskDataModule(task, 32, [0.5] * 3, [0.5] * 3, batch_size=64, num_workers=0)
    dm.setup("fit")
    assert len(next(iter(dm.test_dataloader()))[1]) == expected[2]
    assert check_task(task)["problems"] == []

    with pytest.raises(DataError, match="--force"):
        prepare_fgvc(name, raw, seed=0)
    assert prepare_fgvc(name, raw, seed=0, force=True) == counts
    if name != "flowers":  # the carved val split follows the seed
        again = json.loads((raw / "val.json").read_text())
        prepare_fgvc(name, raw, seed=1, force=True)
        assert json.loads((raw / "val.json").read_text()) != again or len(again) < 2


def test_check_finds_missing_mislabelled_unreadable_and_overlapping(tmp_path):
    raw = tmp_path / "cub"
    raw.mkdir()
    _cub_like(raw, [1, 2, 3])
    prepare_fgvc("cub", raw)
    train = json.loads((raw / "train.json").read_text())
    first, second = sorted(train)[:2]
    (raw / "images" / first).unlink()
    (raw / "images" / second).write_bytes(b"not an image")
    train["extra.jpg"] = 7
    (raw / "train.json").write_text(json.dumps(train))
    test = json.loads((raw / "test.json").read_text())
    test[sorted(train)[-1]] = 0
    (raw / "test.json").write_text(json.dumps(test))
    task = {"name": "fgvc/cub", "family": FGVC(), "num_classes": 3, "data_dir": str(raw), "image_dir": "images"}
    problems = "\n".join(check_task(task)["problems"])
    assert f"missing image: {raw / 'images' / first}" in problems
    assert f"unreadable image: {raw / 'images' / second}" in problems
    assert "label 7 outside 0..2" in problems and "in both train and test" in problems
    with pytest.raises(DataError, match="label 7 of extra.jpg is outside 0..2"):
        TaskDataModule({**task, "transform": "crop"}, 32, [0.5] * 3, [0.5] * 3).setup("fit")


def test_skip_corrupt_images_when_asked(tmp_path):
    raw = tmp_path / "cub"
    raw.mkdir()
    _cub_like(raw, [1, 2])
    prepare_fgvc("cub", raw)
    test = json.loads((raw / "test.json").read_text())
    (raw / "images" / sorted(test)[0]).write_bytes(b"broken")
    task = {"name": "fgvc/cub", "family": FGVC(), "num_classes": 2, "data_dir": str(raw), "image_dir": "images",
            "transform": "crop"}
    dm = TaskDataModule(task, 32, [0.5] * 3, [0.5] * 3, batch_size=64, num_workers=0, skip_corrupt=True)
    dm.setup("fit")
    assert len(next(iter(dm.test_dataloader()))[1]) == len(test) - 1


def test_data_cli_prepare_and_check(tmp_path):
    raw = tmp_path / "CUB_200_2011"
    raw.mkdir()
    _cub_like(raw, [1, 2])
    run = lambda *a: subprocess.run([sys.executable, "-m", "spt_lightning.data", *a], capture_output=True, text=True)  # noqa: E731
    done = run("prepare", "fgvc/cub", "--raw", str(raw))
    assert done.returncode == 0 and "train 6, val 2, test 4" in done.stdout
    done = run("check", "task=fgvc/cub", f"paths.data_dir={tmp_path}", "task.num_classes=2")
    assert done.returncode == 0 and done.stdout.strip().endswith("ok")
    done = run("check", "task=fgvc/dogs", f"paths.data_dir={tmp_path}")
    assert done.returncode == 2 and "Stanford-dogs" in done.stderr
    done = run("check", "task=demo/synthetic")  # a task without files: one line, no traceback
    assert done.returncode == 2 and "built in memory" in done.stderr and "Traceback" not in done.stderr
