"""The default demo's number and its band: the default experiment (SPT-deep P = 10 on Animal-MNIST with the
bundled DINOv2 ViT-S/14, 10 epochs), seeds 0-2, under both single-run selection rules, paired per seed on the
same test images (``compare.py``): the epoch of best val accuracy (200 val images) and the last epoch (the
study's rule). Rerun it after a change to the demo; it is a measurement, not a timed test.

    python benchmarks/demo_band.py run --out logs/demo_band      # about 4 minutes a run on 2 cores
    python benchmarks/demo_band.py table --out logs/demo_band
"""

from __future__ import annotations

import argparse
from pathlib import Path

import compare

RULES = {"last": ["select_epoch=last"], "best_val": ["select_epoch=best_val"]}  # folder -> overrides; reference first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("--out", type=Path, default=Path("logs/demo_band"))
    args, extra = parser.parse_known_args()
    if args.command == "run":
        compare.run(args.out, RULES, extra)
    print(compare.table(args.out, RULES, "last"))


if __name__ == "__main__":
    main()
