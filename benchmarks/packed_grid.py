"""Packed grid points against the same points one after another: K prompt-tuning steps of batch B as one
step of K x B through a shared frozen backbone (models/packed.py) vs K separate steps; throughput ratio
(grid-point steps per second, packed / sequential), measured side by side in one process.

On a CPU the backbone's work is the same either way (expect about 1); on a GPU a batch of 32 leaves the
device idle and packing fills it (`make gpu-check` territory).

    python benchmarks/packed_grid.py [--arch vit_small_patch14_dinov2 --img-size 112 --batch-size 32 --device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spt_lightning.backbones import build_vit
from spt_lightning.models import PromptedViT
from spt_lightning.models.packed import PackedViT, replica_losses
from spt_lightning.precision import resolve_precision


def _model(arch: str, img_size: int, length: int, device: str) -> PromptedViT:
    torch.manual_seed(0)
    model = PromptedViT(build_vit(arch, num_classes=10, img_size=img_size), length, deep=True).to(device)
    model.set_attention("auto")
    model.freeze_backbone()
    return model.train()


def ratios(arch: str, img_size: int, batch: int, length: int, device: str, ks=(1, 2, 4), repeats: int = 3) -> dict:
    """``{K: packed / sequential throughput}`` (and the seconds per grid-point step of each)."""
    precision, _ = resolve_precision("auto", "gpu" if device == "cuda" else device)
    bf16 = "bf16" in precision
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, img_size, img_size, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    out = {"precision": precision}

    def timed(fn) -> float:
        fn()  # warm-up
        samples = []
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    for k in ks:
        models = [_model(arch, img_size, length, device) for _ in range(k)]
        optimizers = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3) for m in models]
        packed = PackedViT(models)
        packed_opt = torch.optim.AdamW([p for p in packed.parameters() if p.requires_grad], lr=1e-3)

        def sequential():
            for model, opt in zip(models, optimizers):
                with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

        def together():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = replica_losses(packed(x), y).sum()
            loss.backward()
            packed_opt.step()
            packed_opt.zero_grad(set_to_none=True)

        seq, pack = timed(sequential), timed(together)
        out[k] = {"ratio": seq / pack, "sequential_s_per_point_step": seq / k, "packed_s_per_point_step": pack / k}
    return out


def main() -> None:
    from bench import geometry_arguments  # benchmarks/ is on the path when a script in it runs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    geometry_arguments(parser)
    args = parser.parse_args()
    result = ratios(args.arch, args.img_size, args.batch_size, args.length, args.device)
    print(f"{args.arch} @ {args.img_size}px, batch {args.batch_size}, P={args.length} deep, {args.device}, "
          f"{result.pop('precision')}")
    print(f"{'K':>2} {'packed / sequential throughput':>31} {'s per point step (seq / packed)':>32}")
    for k, r in result.items():
        print(f"{k:>2} {r['ratio']:>31.2f} {r['sequential_s_per_point_step']:>15.3f} / {r['packed_s_per_point_step']:.3f}")


if __name__ == "__main__":
    main()
