import pytest
import torch

from spt_lightning.data import DataError, TaskDataModule
from spt_lightning.data.tasks import seeded_split

TASK = {"name": "demo/synthetic", "kind": "synthetic", "num_classes": 4, "image_size": 32, "transform": "crop",
        "split_seed": 0, "sizes": {"train": 40, "val": 10, "test": 10}}


def _dm(task=TASK):
    dm = TaskDataModule(task, img_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, num_workers=0)
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
    task = {"name": "fgvc/cub", "kind": "fgvc", "num_classes": 200, "data_dir": str(tmp_path / "CUB_200_2011")}
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
    task = {"name": "fgvc/cub", "kind": "fgvc", "num_classes": 2, "data_dir": str(root), "image_dir": "images",
            "transform": "crop"}
    dm = _dm(task)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (1, 3, 32, 32) and y.tolist() == [1]
    (root / "images" / "a" / "2.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="cannot read image .*2.jpg"):
        next(iter(dm.test_dataloader()))
