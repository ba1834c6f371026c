"""``make bench``: every speed/memory figure with its target, measured side by side in one run.

    python benchmarks/run.py [--device cuda] [--precision auto] [--arch vit_base_patch16_224 --img-size 224]
                             [--compile] [--init-preset cub --init-images N] [--json bench.json]

Figures (targets from the project's performance issue):
  1 SPT-deep step / VPT-deep step at the same P (same architecture; init is separate)   <= 1.01
  2 Lightning training step / a bare PyTorch loop doing the same work                     <= 1.05
  3 prompt-tuning training step / forward-only (also reported against full fine-tuning)  <= 2.3
  4 peak tensor memory of prompt tuning / full fine-tuning at the same batch              <= 0.6
  5 prototype init / one training epoch, default init settings (the demo; --init-preset cub) <= 0.1
  6 images/s the datamodule delivers / images/s the model consumes (the demo)             >= 2
  7 bf16-mixed / fp32 training-step speed-up on this machine                              (reported)
Every figure runs on the path ``--precision`` picks (``auto``: as training picks it: bf16-mixed only where
the device runs bf16 natively); the other path's step time is printed beside it. The header names the
device, and for a CPU whether it has native bf16: a figure holds for the machine it was measured on.
Step times are medians of interleaved repeats, so that the machine's noise hits every variant alike;
figure 1 (one model stepped from either init) is the median of each round's own ratio.
Models use the attention kernel training would pick on the device (``--attention auto``); ``--compile``
compiles the models of figures 1-4 and 7.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bench import Bench, describe_machine, geometry_arguments  # benchmarks/ is on the path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    geometry_arguments(parser)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--attention", default="auto", choices=["auto", "fused", "eager"],
                        help="attention kernel, resolved per device as in training (auto: eager on CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (as `compile=true`)")
    parser.add_argument("--init-preset", choices=["demo", "cub"], default="demo",
                        help="figure 5's data and model (cub: 6,000 images, ViT-B/16 geometry; see prototype_init.py)")
    parser.add_argument("--init-images", type=int, default=None,
                        help="figure 5's training images (default: the preset's)")
    parser.add_argument("--skip-demo", action="store_true", help="skip figures 5 and 6 (they need the demo assets)")
    parser.add_argument("--precision", default="auto", help="auto (as training picks it), bf16-mixed or 32-true")
    parser.add_argument("--json", default="bench.json")
    args = parser.parse_args()
    b = Bench(args.arch, args.img_size, args.batch_size, args.length, args.device, args.attention, args.compile,
              args.precision)
    machine = describe_machine(args.device)
    print(f"{machine}; figures in {b.precision}")
    vpt, full = b.model(), b.model(prompts=False, full=True)
    # Figure 1 resolves a 1% difference, about this machine's noise: its pair alternates alone, three
    # times as often, and the ratio is the median of each round's own ratio (neighbours share the noise).
    pair = b.samples(b.init_pair(b.model()), 3 * args.repeats)
    pair_ratios = sorted(s / v for s, v in zip(pair["spt"], pair["vpt"]))
    t = b.timed({"vpt": b.step_fn(vpt), "forward": b.forward_fn(vpt), "full": b.step_fn(full),
                 "other": b.step_fn(vpt, bf16=not b.bf16)}, args.repeats)
    lightning, bare = b.lightning_vs_bare(steps=8, rounds=args.repeats)
    mem_prompt, mem_full = b.peak_memory(b.model()), b.peak_memory(b.model(prompts=False, full=True))
    rows = [
        ("1 SPT step / VPT step", statistics.median(pair_ratios), "<=", 1.01),
        ("2 Lightning step / bare loop", lightning / bare, "<=", 1.05),
        ("3 prompt step / forward-only", t["vpt"] / t["forward"], "<=", 2.3),
        ("3b prompt step / full fine-tuning step", t["vpt"] / t["full"], "", None),
        ("4 peak memory prompt / full", mem_prompt / mem_full if mem_full > 0 else float("nan"), "<=", 0.6),
    ]
    if not args.skip_demo:
        from data_loading import IMAGENET, loader_rate, model_rate
        from prototype_init import run as init_run

        from spt_lightning.data import TaskDataModule
        from spt_lightning.data.families import AnimalMNIST

        init = init_run(args.init_preset, args.init_images, args.length, args.batch_size, 2,
                        "gpu" if args.device == "cuda" else "cpu", b.precision, 20)
        task = {"name": "demo/animal_mnist", "family": AnimalMNIST(), "num_classes": 10, "transform": "resize",
                "split_seed": 0, "sizes": {"train": 800, "val": 200, "test": 2000}}
        dm = TaskDataModule(task, 112, *IMAGENET, batch_size=args.batch_size, num_workers=2)
        dm.setup("fit")
        load, use = loader_rate(dm), model_rate("vit_small_patch14_dinov2", 112, args.batch_size,
                                                args.device, args.repeats)
        import tempfile

        from data_loading import cached_vs_uncached

        with tempfile.TemporaryDirectory() as tmp:
            cached = cached_vs_uncached(Path(tmp), 128, 2, args.batch_size)
        # No target: the init is one capture pass over the training set (about half an epoch); what matters
        # is its share of a recipe's run (100 epochs), figure 5b.
        rows += [("5 prototype init / training epoch", init["init_per_epoch"], "", None),
                 ("5b prototype init / 100-epoch recipe run (%)", 100 * init["init_per_epoch"] / 100, "", None),
                 ("6 loader img/s / model img/s", load / use, ">=", 2.0),
                 ("6b loader 224px img/s per core, kept / decoded", cached["ratio"], "", None)]
    from packed_grid import ratios as packed_ratios

    packed = packed_ratios(args.arch, args.img_size, args.batch_size, args.length, args.device, ks=(1, 2, 4))
    rows += [(f"8 packed / sequential grid throughput, K={k}", packed[k]["ratio"], "", None) for k in (1, 2, 4)]
    bf16_step, fp32_step = (t["vpt"], t["other"]) if b.bf16 else (t["other"], t["vpt"])
    rows.append(("7 bf16-mixed speed-up over fp32", fp32_step / bf16_step, "", None))
    quartiles = statistics.quantiles(pair_ratios, n=4)
    print(f"figure 1: {len(pair_ratios)} paired rounds, SPT/VPT quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}")
    print(f"{args.arch} @ {args.img_size}px, batch {args.batch_size}, P={args.length}, {args.device}; "
          f"step {1000 * t['vpt']:.0f} ms, forward {1000 * t['forward']:.0f} ms, full {1000 * t['full']:.0f} ms, "
          f"{'fp32' if b.bf16 else 'bf16-mixed'} step {1000 * t['other']:.0f} ms (the other path); "
          f"memory prompt {mem_prompt / 2**20:.0f} MiB, full {mem_full / 2**20:.0f} MiB")
    if not args.skip_demo:
        print(f"{args.init_preset} init ({init['images']} images): capture {init['capture_s']:.1f} s "
              f"+ k-means {init['kmeans_s']:.1f} s, "
              f"training epoch {init['epoch_s']:.1f} s; loader {load:.0f} img/s, model {use:.0f} img/s; "
              f"224 px loader per core: {cached['cached']:.0f} img/s with images kept decoded, "
              f"{cached['uncached']:.0f} decoding each time")
    print(f"{'figure':<42} {'value':>7}  target")
    out = []
    for name, value, op, target in rows:
        met = "" if target is None else ("met" if (value <= target if op == "<=" else value >= target) else "MISSED")
        print(f"{name:<42} {value:>7.2f}  {op} {'' if target is None else target} {met}")
        out.append({"figure": name, "value": value, "op": op, "target": target, "met": met or None})
    Path(args.json).write_text(json.dumps({"device": args.device, "machine": machine, "precision": b.precision,
                                           "arch": args.arch, "rows": out}, indent=2))


if __name__ == "__main__":
    main()
