import subprocess
import sys

import pytest
import torch

from spt_lightning.data import DataError, TaskDataModule
from spt_lightning.data.families import FGVC, ImageFolder, SplitFiles, Synthetic, family_of, seeded_split

TASK = {"name": "demo/synthetic", "family": Synthetic(), "num_classes": 4, "image_size": 32, "transform": "crop",
        "split_seed": 0, "sizes": {"train": 40, "val": 10, "test": 10}}


def _dm(task=TASK, cache_images="auto"):
    dm = TaskDataModule(task, img_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, num_workers=0,
                        cache_images=cache_images)
    dm.setup("fit")
    return dm


def test_seeded_split_is_disjoint_and_reproducible():
    a, b = seeded_split(100, {"train": 50, "val": 20, "test": 30}, seed=3), seeded_split(100, {"train": 50, "val": 20, "test": 30}, seed=3)
    assert all(torch.equal(torch.as_tensor(a[s]), torch.as_tensor(b[s])) for s in a)
    assert len(set(a["train"]) | set(a["val"]) | set(a["test"])) == 100
    with pytest.raises(DataError, match="need 110 items"):
        seeded_split(100, {"train": 80, "val": 20, "test": 10}, seed=0)


def test_prototype_loader_uses_eval_transforms_and_a_seeded_fraction():
    dm = _dm()
    full = torch.cat([x for x, _ in dm.prototype_dataloader()])
    again = torch.cat([x for x, _ in dm.prototype_dataloader()])
    assert full.shape == (40, 3, 32, 32) and torch.equal(full, again)  # eval transforms: deterministic
    half = torch.cat([x for x, _ in dm.prototype_dataloader(fraction=0.5, seed=1)])
    assert half.shape[0] == 20 and torch.equal(half, torch.cat([x for x, _ in dm.prototype_dataloader(0.5, 1)]))
    assert all((full == row).flatten(1).all(1).any() for row in half)  # a subset of the training split


def test_missing_data_folder_names_the_folder_and_the_key(tmp_path):
    task = {"name": "fgvc/cub", "family": FGVC(), "num_classes": 200, "data_dir": str(tmp_path / "CUB_200_2011")}
    with pytest.raises(DataError, match=r"CUB_200_2011.*\n.*paths.data_dir"):
        _dm(task)


def test_fgvc_json_splits_round_trip(tmp_path):
    from PIL import Image
    import json

    root = tmp_path / "CUB_200_2011"
    (root / "images" / "a").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (40, 30), (i * 80, 0, 0)).save(root / "images" / "a" / f"{i}.jpg")
    for split, items in (("train", {"a/0.jpg": 0, "a/1.jpg": 1}), ("val", {"a/2.jpg": 1}), ("test", {"a/2.jpg": 1})):
        (root / f"{split}.json").write_text(json.dumps(items))
    task = {"name": "fgvc/cub", "family": FGVC(), "num_classes": 2, "data_dir": str(root), "image_dir": "images",
            "transform": "crop"}
    dm = _dm(task, cache_images=False)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (1, 3, 32, 32) and y.tolist() == [1]
    (root / "images" / "a" / "2.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="cannot read image .*2.jpg"):
        next(iter(dm.test_dataloader()))
    with pytest.raises(DataError, match="cannot read image .*2.jpg"):  # kept decoded: found before training
        _dm(task, cache_images=True)


def _dm_with(protocol="select", fraction=1.0, seed=0, task=TASK):
    dm = TaskDataModule(task, img_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, num_workers=0,
                        protocol=protocol, fraction=fraction, seed=seed)
    dm.setup("fit")
    return dm


def test_protocols_choose_the_training_and_evaluation_splits():
    select, tune, final = (_dm_with(p) for p in ("select", "tune", "final"))
    assert len(select.train_dataloader().dataset) == 40 and len(select.val_dataloader().dataset) == 10
    assert select.has_test and not tune.has_test and tune.has_val
    assert len(final.train_dataloader().dataset) == 50 and final.val_dataloader() == [] and final.has_test
    labels = lambda ds: sorted(int(ds[i][1]) for i in range(len(ds)))  # noqa: E731
    assert labels(final.train_dataloader().dataset) == sorted(
        labels(select.train_dataloader().dataset) + labels(select.val_dataloader().dataset))


def test_data_fraction_is_seeded_and_shared_with_the_prototype_pass():
    a, b, c = _dm_with(fraction=0.25, seed=1), _dm_with(fraction=0.25, seed=1), _dm_with(fraction=0.25, seed=2)
    assert len(a.train_dataloader().dataset) == 10
    assert a.train_dataloader().dataset.indices == b.train_dataloader().dataset.indices
    assert a.train_dataloader().dataset.indices != c.train_dataloader().dataset.indices
    assert len(a.prototype_dataloader().dataset) == 10  # prototypes come from the data actually trained on
    with pytest.raises(ValueError, match="data.fraction"):
        _dm_with(fraction=0.0)
    with pytest.raises(ValueError, match="data.protocol"):
        _dm_with(protocol="test")


def test_image_folder_task(tmp_path):
    from PIL import Image

    for split in ("train", "val", "test"):
        for cls in ("cat", "dog", "owl"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (36, 36), (10, 20, 30)).save(tmp_path / split / cls / "a.png")
    task = {"name": "folder", "family": ImageFolder(), "num_classes": None, "data_dir": str(tmp_path), "transform": "crop"}
    assert family_of(task).num_classes(task) == 3
    dm = _dm_with(task=task)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (3, 3, 32, 32) and sorted(y.tolist()) == [0, 1, 2]
    __import__("shutil").rmtree(tmp_path / "val")
    with pytest.raises(DataError, match="lacks val/"):
        _dm_with(task=task)


def _authors_steps(name: str, train: bool) -> list:
    """Each lineage's transforms as its code writes them (torchvision, 224 px; normalisation left out)."""
    import torchvision.transforms as T

    evaluation = {
        "resize": [T.Resize((224, 224), interpolation=3)],  # NOAH's VTAB-1k loader
        "center_crop": [T.Resize(224, interpolation=3), T.CenterCrop(224)],  # SPT Dataset/VTAB.py L51-53 (= L58-60)
        "vpt": [T.Resize(256), T.CenterCrop(224)],  # VPT src/data/transforms.py L33-36
        "crop": [T.Resize(256, interpolation=3), T.CenterCrop(224)],  # SPT Dataset/FGVC.py L54-56
    }
    training = {
        "vpt": [T.Resize(256), T.RandomCrop(224), T.RandomHorizontalFlip(0.5)],  # VPT transforms.py L21-25
        "crop": [T.RandomResizedCrop(224, interpolation=3), T.RandomHorizontalFlip(0.5)],  # SPT FGVC.py L47-49
    }
    return training.get(name, evaluation[name]) if train else evaluation[name]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", ["resize", "center_crop", "vpt", "crop"])
def test_each_transform_equals_its_lineages_code_on_a_non_square_image(name, train):
    import numpy as np
    import torchvision.transforms as T
    from PIL import Image

    from spt_lightning.data.transforms import build_transforms

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8))  # 300 x 200
    torch.manual_seed(0)
    ours = build_transforms(name, 224, [0.0] * 3, [1.0] * 3, train=train)(image)
    torch.manual_seed(0)
    theirs = T.Compose([*_authors_steps(name, train), T.ToTensor()])(image)
    assert ours.shape == (3, 224, 224) and torch.equal(ours, theirs)
    if name != "resize" and not train:  # the short side is kept: the middle of the width, not a squashed image
        assert not torch.equal(ours, build_transforms("resize", 224, [0.0] * 3, [1.0] * 3, train=False)(image))
    with pytest.raises(ValueError, match="resize, center_crop, vpt, crop"):
        build_transforms("nope", 224, [0.0] * 3, [1.0] * 3, train=True)


def _jpeg_task(root, transform):
    """An FGVC-style folder: JPEGs of several sizes (one grayscale), VPT's json split files."""
    import json

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    items = {}
    for i in range(14):
        rel = f"c{i % 3}/{i}.jpg"
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        shape = (30 + 3 * i, 50 - i) + (() if i == 5 else (3,))
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / "images" / rel, quality=90)
        items[rel] = i % 3
    for split in ("train", "val", "test"):
        (root / f"{split}.json").write_text(json.dumps(items))
    return {"name": "jpegs", "family": FGVC(), "num_classes": 3, "data_dir": str(root), "image_dir": "images",
            "transform": transform}


@pytest.mark.parametrize("transform", ["resize", "center_crop", "vpt", "crop"])
@pytest.mark.parametrize("protocol", ["select", "final"])
def test_images_kept_decoded_give_bit_identical_batches(tmp_path, transform, protocol):
    """data.cache_images: the same tensors, random crops and flips included, with 2 loader workers."""
    task = _jpeg_task(tmp_path, transform)
    seen = {}
    for cache in (False, True):
        torch.manual_seed(0)  # the prototype loader's worker seeds come from the global generator, as in a run
        dm = TaskDataModule(task, img_size=24, mean=[0.5] * 3, std=[0.5] * 3, batch_size=4, num_workers=2,
                            protocol=protocol, cache_images=cache)
        dm.setup("fit")
        assert bool(dm.splits["train"].decoded) == cache
        loaders = [dm.train_dataloader(), dm.prototype_dataloader(train_transforms=True), dm.test_dataloader(),
                   *([dm.val_dataloader()] if protocol == "select" else [])]
        seen[cache] = [torch.cat([x for x, _ in loader]) for loader in loaders]
    assert all(torch.equal(a, b) for a, b in zip(seen[False], seen[True], strict=True))


def test_auto_keeps_images_only_when_they_fit_in_a_share_of_free_memory(tmp_path, monkeypatch, caplog):
    from spt_lightning.data import datamodule

    task = _jpeg_task(tmp_path, "resize")
    dm = TaskDataModule(task, img_size=24, mean=[0.5] * 3, std=[0.5] * 3, num_workers=0, cache_images="auto")
    dm.setup("fit")
    assert dm.splits["train"].decoded  # 14 images of 24 x 24 fit
    monkeypatch.setattr(datamodule, "CACHE_SHARE", 1e-12)
    dm = TaskDataModule(task, img_size=24, mean=[0.5] * 3, std=[0.5] * 3, num_workers=0, cache_images="auto")
    with caplog.at_level("INFO"):
        dm.setup("fit")
    assert not dm.splits["train"].decoded and "Images not kept decoded" in caplog.text
    with pytest.raises(Exception, match="data.cache_images='sometimes': expected one of True, False, auto"):
        TaskDataModule(task, img_size=24, mean=[0.5] * 3, std=[0.5] * 3, cache_images="sometimes")


def test_a_run_exits_while_a_loader_still_holds_its_workers(tmp_path):
    """Workers ignore SIGTERM (a signal to the process group is the main process's to handle), so the exit
    must not wait on them: a loader still referenced at exit (as an interrupted run's traceback keeps it)."""
    task = {**_jpeg_task(tmp_path, "resize"), "family": {"_target_": "spt_lightning.data.families.FGVC"}}
    script = f"""
import sys
from spt_lightning.data.datamodule import TaskDataModule
dm = TaskDataModule({task!r}, img_size=24, mean=[0.5] * 3, std=[0.5] * 3, batch_size=1, num_workers=2)
dm.setup("fit")
batches = iter(dm.train_dataloader())
next(batches)
keep = [batches]
keep.append(keep)  # a cycle: only the collector, after the exit handlers, would free the loader
sys.exit(143)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr[-2000:]


class CsvLists(SplitFiles):
    """A task family the way a user adds one (README, Extending): CSV split lists, ``path,label`` per line."""

    layout = "train.csv, val.csv and test.csv, one `relative/path,label` per line"
    files = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}

    def read(self, path):
        return [(rel, int(label)) for rel, label in (line.rsplit(",", 1) for line in path.read_text().split())]


def test_a_new_task_family_is_one_class_named_by_its_task(tmp_path):
    """The door for a new layout: a Family subclass named by `task.family._target_` is read, checked and
    judged like the shipped ones; its missing folder says what the folder should hold."""
    from PIL import Image

    from spt_lightning.data.check import check_task
    from spt_lightning.data.provenance import provenance

    for i in range(4):
        Image.new("RGB", (40, 30), (i * 60, 0, 0)).save(tmp_path / f"{i}.png")
    for split, lines in (("train", "0.png,0\n1.png,1\n"), ("val", "2.png,1\n"), ("test", "3.png,0\n")):
        (tmp_path / f"{split}.csv").write_text(lines)
    task = {"name": "csv/toy", "family": {"_target_": f"{__name__}.CsvLists"}, "num_classes": 2,
            "data_dir": str(tmp_path), "transform": "resize"}
    dm = _dm(task, cache_images=False)
    assert isinstance(family_of(task), CsvLists) and len(dm.splits["train"]) == 2
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (1, 3, 32, 32) and y.tolist() == [0]
    report = check_task(task)
    assert report["counts"] == {"train": 2, "val": 1, "test": 1} and report["problems"] == []
    assert provenance(task) == {"standard": False, "how": "task family CsvLists", "images": "lossless"}
    with pytest.raises(DataError, match=r"holds nowhere/, .*\nThe folder holds train.csv, val.csv and test.csv"):
        _dm({**task, "data_dir": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="task.family .* cannot be built"):
        family_of({**task, "family": {"_target_": "spt_lightning.data.families.NoSuchLayout"}})


def test_a_task_saved_before_families_reads_its_kind():
    """Runs saved before task families named their layout `task.kind`: they build the same family, and
    settings (a study's digests) record the family by that kind, unchanged by the move."""
    from spt_lightning.settings import FAMILY_KINDS, digest, settings

    for target, kind in FAMILY_KINDS.items():
        assert type(family_of({"name": "t", "kind": kind})).__name__ == target.rsplit(".", 1)[1]
        old = {"task": {"name": "t", "kind": kind, "num_classes": 3}, "seed": 0}
        new = {"task": {"name": "t", "family": {"_target_": target}, "num_classes": 3}, "seed": 0}
        assert settings(new) == settings(old) and digest(new) == digest(old)
    with pytest.raises(DataError, match="names no family"):
        family_of({"name": "t", "kind": "csv"})
