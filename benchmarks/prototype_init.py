"""Prototype init cost in training epochs: (capture pass + k-means on every token) / one training epoch.

Both are measured side by side in one run, on the same images held in memory (no loader cost), with
the same precision. Presets:
  demo  the offline demo: bundled DINOv2 ViT-S/14 at 112 px, 800 Animal-MNIST images, P=10, deep
  cub   CUB scale: ViT-B/16 geometry (random weights) at 224 px, 12 layers, 6,000 images, P=10, deep

Both terms grow linearly with the number of images, so ``--images`` may shrink the CUB preset on a
slow machine (the ratio stays; the absolute times are printed too).

    python benchmarks/prototype_init.py --preset demo
    python benchmarks/prototype_init.py --preset cub --images 6000 --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
import torch.nn.functional as F

from spt_lightning.backbones import build_vit
from spt_lightning.models import PromptedViT
from spt_lightning.prototypes.capture import TokenReservoir, capture
from spt_lightning.prototypes.strategies import kmeans

PRESETS = {
    "demo": dict(arch="vit_small_patch14_dinov2", source="bundled", img_size=112, images=800, classes=10),
    "cub": dict(arch="vit_base_patch16_224", source="none", img_size=224, images=6000, classes=200),
}


def demo_images(n: int, img_size: int) -> torch.Tensor:
    from spt_lightning.data import TaskDataModule

    task = {"name": "demo/animal_mnist", "kind": "animal_mnist", "num_classes": 10, "transform": "resize",
            "split_seed": 0, "sizes": {"train": n, "val": 0, "test": 0}}
    dm = TaskDataModule(task, img_size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), num_workers=0)
    return torch.cat([x for x, _ in dm.prototype_dataloader(batch_size=100)])


def run(preset: str, images: int | None, length: int, batch: int, device: str, bf16: bool, iters: int) -> dict:
    p = PRESETS[preset]
    n = images or p["images"]
    torch.manual_seed(0)
    vit = build_vit(p["arch"], num_classes=p["classes"], img_size=p["img_size"], source=p["source"])
    model = PromptedViT(vit, length, deep=True).to(device)
    model.freeze_backbone()
    x = demo_images(n, p["img_size"]) if preset == "demo" else torch.randn(n, 3, p["img_size"], p["img_size"])
    y = torch.randint(0, p["classes"], (n,))
    autocast = (lambda: torch.autocast(device, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    batches = [(xb.to(device), yb.to(device)) for xb, yb in zip(x.split(batch), y.split(batch))]

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    # one training epoch: forward + backward + AdamW on prompts and head
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-3)
    model.train()
    for xb, yb in batches[:1]:  # warm-up step, not timed
        with autocast():
            F.cross_entropy(model(xb), yb).backward()
        opt.zero_grad()
    sync()
    t0 = time.perf_counter()
    for xb, yb in batches:
        with autocast():
            loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    epoch = time.perf_counter() - t0

    # prototype init: capture every token of every layer, then k-means per layer
    layers = len(model.vit.blocks)
    reservoirs = [TokenReservoir(10**9, torch.Generator().manual_seed(0)) for _ in range(layers)]
    t0 = time.perf_counter()
    capture(model, (xb for xb, _ in batches), reservoirs, autocast)
    sync()
    capture_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = 0
    for layer, reservoir in enumerate(reservoirs):
        pool = reservoir.tokens()
        tokens = len(pool)
        kmeans(pool, length, iters, seed=layer)
        reservoirs[layer] = None  # free as we go
    kmeans_time = time.perf_counter() - t0
    init = capture_time + kmeans_time
    return {
        "preset": preset, "arch": p["arch"], "img_size": p["img_size"], "images": n, "layers": layers,
        "prompt_length": length, "tokens_per_layer": tokens, "device": device, "bf16": bf16,
        "epoch_s": epoch, "capture_s": capture_time, "kmeans_s": kmeans_time, "init_s": init,
        "init_per_epoch": init / epoch, "target": 0.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=[*PRESETS, "all"], default="all")
    parser.add_argument("--images", type=int, default=None, help="images per preset (default: the preset's)")
    parser.add_argument("--length", type=int, default=10, help="prompts per layer (k of k-means)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--iters", type=int, default=20, help="k-means iterations")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--fp32", action="store_true", help="full fp32 instead of bf16 autocast")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    presets = list(PRESETS) if args.preset == "all" else [args.preset]
    rows = [run(p, args.images, args.length, args.batch_size, args.device, not args.fp32, args.iters) for p in presets]
    print(f"{'preset':<6} {'images':>6} {'tokens/layer':>12} {'epoch s':>8} {'capture s':>9} {'kmeans s':>8} "
          f"{'init/epoch':>10}  target")
    for r in rows:
        ok = "ok" if r["init_per_epoch"] <= r["target"] else "MISSED"
        print(f"{r['preset']:<6} {r['images']:>6} {r['tokens_per_layer']:>12,} {r['epoch_s']:>8.1f} "
              f"{r['capture_s']:>9.1f} {r['kmeans_s']:>8.1f} {r['init_per_epoch']:>10.2f}  <= {r['target']} {ok}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
