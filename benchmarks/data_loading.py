"""Data loading vs. model speed: images/s the datamodule delivers / images/s a training step consumes.

Measured side by side in one run with the defaults (2 workers, batch 32, precision as training picks it). Presets:
  demo  Animal-MNIST at 112 px (resize recipe) for the bundled ViT-S/14, P=10 deep
  fgvc  generated 500x375 JPEG files read from disk (FGVC crop recipe) at 224 px for ViT-B/16, P=10 deep
Target: >= 2 (the loader is not the bottleneck).

    python benchmarks/data_loading.py [--preset demo|fgvc|all] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from spt_lightning.data import TaskDataModule
from spt_lightning.data.families import FGVC, AnimalMNIST

IMAGENET = (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)


def fgvc_folder(root: Path, n: int) -> dict:
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    items = {}
    for i in range(n):
        rel = f"c{i % 10}/{i}.jpg"
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 255, (375, 500, 3), generator=rng, dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(root / "images" / rel, quality=90)
        items[rel] = i % 10
    for split in ("train", "val", "test"):
        (root / f"{split}.json").write_text(json.dumps(items))
    return {"name": "fgvc-like", "family": FGVC(), "num_classes": 10, "data_dir": str(root), "image_dir": "images",
            "transform": "crop"}


def loader_rate(dm: TaskDataModule, epochs: int = 2) -> float:
    loader = dm.train_dataloader()
    next(iter(loader))  # warm-up outside the timing; each epoch then starts its workers, as training does
    seen, started = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in loader:
            seen += len(x)
    return seen / (time.perf_counter() - started)


def cached_vs_uncached(root: Path, images: int, workers: int, batch: int, rounds: int = 3) -> dict[str, float]:
    """Loader images/s per worker at 224 px (FGVC folder of 500x375 JPEGs, VPT's resize 256 + random crop
    224 + flip), with every image decoded on each read and with ``data.cache_images=true``; the two loaders
    alternate ``rounds`` times (the machine is shared), the best round of each counts."""
    task = {**fgvc_folder(root, images), "transform": "vpt"}
    loaders = {}
    for cache in (False, True):
        dm = TaskDataModule(task, 224, *IMAGENET, batch_size=batch, num_workers=workers, cache_images=cache)
        dm.setup("fit")
        loaders[cache] = dm
    best = {False: 0.0, True: 0.0}
    for _ in range(rounds):
        for cache, dm in loaders.items():
            best[cache] = max(best[cache], loader_rate(dm, epochs=1) / max(1, workers))
    return {"uncached": best[False], "cached": best[True], "ratio": best[True] / best[False]}


def model_rate(arch: str, img_size: int, batch: int, device: str, steps: int) -> float:
    """Images/s a prompt-tuning training step consumes (P=10 deep, precision as training picks it), timed as
    ``make bench`` times steps."""
    from bench import Bench  # benchmarks/ is on the path when a script in it runs

    bench = Bench(arch, img_size, batch, 10, device)
    return batch / bench.timed({"step": bench.step_fn(bench.model())}, steps)["step"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["demo", "fgvc", "all"], default="all")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=256, help="files generated for the fgvc preset")
    parser.add_argument("--steps", type=int, default=4, help="timed training steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        presets = ["demo", "fgvc"] if args.preset == "all" else [args.preset]
        for preset in presets:
            if preset == "demo":
                task = {"name": "demo/animal_mnist", "family": AnimalMNIST(), "num_classes": 10, "transform": "resize",
                        "split_seed": 0, "sizes": {"train": 800, "val": 200, "test": 2000}}
                arch, img_size = "vit_small_patch14_dinov2", 112
            else:
                task, arch, img_size = fgvc_folder(Path(tmp), args.images), "vit_base_patch16_224", 224
            dm = TaskDataModule(task, img_size, *IMAGENET, batch_size=args.batch_size, num_workers=args.workers)
            dm.setup("fit")
            load = loader_rate(dm)
            use = model_rate(arch, img_size, args.batch_size, args.device, args.steps)
            rows.append((preset, load, use))
    print(f"{'preset':<6} {'loader img/s':>12} {'model img/s':>11} {'ratio':>6}  target")
    for preset, load, use in rows:
        print(f"{preset:<6} {load:>12.1f} {use:>11.1f} {load / use:>6.1f}  >= 2 {'met' if load / use >= 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
