"""Prototype init cost in training epochs: SPT's prompt init / one training epoch on the same data.

Both go through the framework's own code paths, measured side by side in one run: the training epoch
is a Lightning ``fit`` epoch (data loader, forward, backward, AdamW on prompts + head; no validation),
the init is the ``PrototypeInit`` callback with the framework's default settings (``conf/init``: capture
pass over a seeded part of the training split with eval transforms, then FAISS k-means per layer on
256*P tokens; cache off), or with the settings given (``--tokens-per-prompt all``: every token). Presets:

  demo  the offline demo: bundled DINOv2 ViT-S/14 at 112 px, 800 Animal-MNIST images, P=10, deep
  cub   CUB scale: ViT-B/16 geometry (random weights) at 224 px, 12 layers, 6,000 generated images, P=10

Both terms grow linearly with the number of images, so ``--images`` may shrink the CUB preset on a
slow machine; the ratio holds, and the absolute times are printed too.

    python benchmarks/prototype_init.py --preset demo [--tokens-per-prompt all] [--data-fraction 0.1]
    python benchmarks/prototype_init.py --preset cub --images 6000 --device cuda
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import lightning as L
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from spt_lightning.backbones import Pretrain, build_vit
from spt_lightning.callbacks import PrototypeInit
from spt_lightning.data import TaskDataModule
from spt_lightning.data.families import AnimalMNIST, Synthetic
from spt_lightning.models import PromptedViT
from spt_lightning.module import PromptTuningModule
from spt_lightning.precision import resolve_precision

IMAGENET = (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
PRESETS = {
    "demo": dict(arch="vit_small_patch14_dinov2", source="bundled", img_size=112, images=800,
                 task={"name": "demo/animal_mnist", "family": AnimalMNIST(), "num_classes": 10}),
    "cub": dict(arch="vit_base_patch16_224", source="none", img_size=224, images=6000,
                task={"name": "cub-scale", "family": Synthetic(), "num_classes": 200, "image_size": 224}),
}


class EpochTimer(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.started


def init_defaults() -> dict:
    """The framework's prototype-init settings (conf/init/default.yaml), so the figure is the default's."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(files("spt_lightning.conf") / "init" / "default.yaml")
    return {"strategy": "kmeans", "data_fraction": cfg.data_fraction, "tokens_per_prompt": cfg.tokens_per_prompt}


def run(preset: str, images: int | None, length: int, batch: int, workers: int, accelerator: str,
        precision: str, iters: int, settings: dict | None = None) -> dict:
    p = PRESETS[preset]
    n = images or p["images"]
    precision, _ = resolve_precision(precision, accelerator)
    task = {**p["task"], "transform": "resize", "split_seed": 0, "sizes": {"train": n, "val": 0, "test": 0}}
    torch.manual_seed(0)
    pretrain = Pretrain(source=p["source"])
    vit = build_vit(p["arch"], num_classes=task["num_classes"], img_size=p["img_size"], pretrain=pretrain)
    pretrain.load(vit)
    model = PromptedViT(vit, length, deep=True)
    module = PromptTuningModule(model, task["num_classes"], functools.partial(torch.optim.AdamW, lr=1e-3))
    dm = TaskDataModule(task, p["img_size"], *IMAGENET, batch_size=batch, num_workers=workers)
    settings = {**init_defaults(), **(settings or {})}
    init = PrototypeInit(**settings, kmeans_iters=iters, cache_dir=None)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, max_epochs=1, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[init, timer])
    trainer.fit(module, datamodule=dm)
    s = init.stats
    return {
        "preset": preset, "arch": p["arch"], "img_size": p["img_size"], "images": n, "layers": len(s["layers"]),
        "prompt_length": length, "tokens_per_layer": s["layers"][0]["tokens"], "accelerator": accelerator,
        "precision": precision, "epoch_s": timer.seconds, "capture_s": s["capture_time"],
        "kmeans_s": s["prototype_time"], "init_s": s["time"], "init_per_epoch": s["time"] / timer.seconds,
        "settings": settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    parser.add_argument("--images", type=int, default=None, help="training images per preset (default: the preset's)")
    parser.add_argument("--length", type=int, default=10, help="prompts per layer (k of k-means)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="data loader workers")
    parser.add_argument("--iters", type=int, default=20, help="k-means iterations")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", help="auto: as training picks it (bf16 only where native)")
    parser.add_argument("--strategy", default="kmeans", help="prompt.init: kmeans or random")
    parser.add_argument("--tokens-per-prompt", type=lambda v: None if v == "all" else int(v), default=argparse.SUPPRESS,
                        help="tokens kept per prompt and layer ('all': every token); default: conf/init's")
    parser.add_argument("--data-fraction", type=float, default=argparse.SUPPRESS, help="default: conf/init's")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    accelerator = "gpu" if args.device == "cuda" else args.device
    presets = list(PRESETS) if args.preset == "all" else [args.preset]
    rows = [run(p, args.images, args.length, args.batch_size, args.workers, accelerator, args.precision, args.iters,
                {k: v for k, v in vars(args).items() if k in ("strategy", "tokens_per_prompt", "data_fraction")})
            for p in presets]
    print(f"init settings: {rows[0]['settings']}; {rows[0]['precision']}")
    print(f"{'preset':<6} {'images':>6} {'tokens/layer':>12} {'epoch s':>8} {'capture s':>9} {'kmeans s':>8} "
          f"{'init/epoch':>10} {'of 100 epochs':>13}")
    for r in rows:
        print(f"{r['preset']:<6} {r['images']:>6} {r['tokens_per_layer']:>12,} {r['epoch_s']:>8.1f} "
              f"{r['capture_s']:>9.1f} {r['kmeans_s']:>8.1f} {r['init_per_epoch']:>10.2f} {r['init_per_epoch']:>12.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
