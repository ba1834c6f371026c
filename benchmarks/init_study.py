"""Prototype init: accuracy against cost, on the demo (SPT-deep, bundled DINOv2 ViT-S/14, Animal-MNIST).

Each variant trains the demo with 3 seeds through the real command line; every run keeps which test
images it got right (``test_correct`` in results.json), so two variants are compared image by image:
McNemar's exact test on the (seed, image) pairs against every-token k-means.

    python benchmarks/init_study.py run --out logs/init_study      # 5 variants x 3 seeds (about an hour on 2 cores)
    python benchmarks/init_study.py table --out logs/init_study    # the table, the p-values and a plot
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

VARIANTS = {  # name -> overrides; the reference first
    "kmeans, every token": ["prompt.init=kmeans", "init.max_tokens_per_layer=100000"],
    "kmeans, 256*P tokens/layer": ["prompt.init=kmeans", "init.max_tokens_per_layer=2560"],
    "kmeans, data_fraction 0.25": ["prompt.init=kmeans", "init.data_fraction=0.25"],
    "kmeans, data_fraction 0.1": ["prompt.init=kmeans", "init.data_fraction=0.1"],
    "random tokens": ["prompt.init=random"],
}
SEEDS = "0,1,2"


def _folder(out: Path, name: str) -> Path:
    return out / name.replace(" ", "_").replace(",", "").replace("*", "x")


def run(out: Path, extra: list[str]) -> None:
    for name, overrides in VARIANTS.items():
        folder = _folder(out, name)
        print(f"== {name}: {' '.join(overrides)}", flush=True)
        subprocess.run([sys.executable, "-m", "spt_lightning", "-m", f"seed={SEEDS}", *overrides, *extra,
                        f"hydra.sweep.dir={folder}", "init.cache_dir=null"], check=False)


def mcnemar(a: str, b: str) -> float:
    """Two-sided exact McNemar p-value of paired right/wrong strings."""
    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b))
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def table(out: Path) -> str:
    runs = {name: sorted((json.loads(p.read_text()) for p in _folder(out, name).rglob("results.json")),
                         key=lambda r: r["seed"]) for name in VARIANTS}
    reference_name = next(iter(VARIANTS))
    reference = runs[reference_name]
    lines = ["| init | test acc. (%, mean ± std, 3 seeds) | init time (s) | init / training epoch | "
             "paired vs every-token k-means (McNemar p) |", "| --- | --- | --- | --- | --- |"]
    points = []
    for name, rs in runs.items():
        rs = [r for r in rs if r["status"] == "ok"]
        if not rs:
            continue
        accs = [100 * r["test"]["acc1"] for r in rs]
        init = statistics.mean(r["timings"]["init"] for r in rs)
        epoch = statistics.mean(r["timings"]["train"] / r["selection"]["epochs"] for r in rs)
        pairs = [(r, q) for r in rs for q in reference if q["seed"] == r["seed"]]
        paired = "".join(r["test_correct"] for r, _ in pairs), "".join(q["test_correct"] for _, q in pairs)
        diff = statistics.mean(100 * (r["test"]["acc1"] - q["test"]["acc1"]) for r, q in pairs)
        p = "—" if name == reference_name else f"{mcnemar(*paired):.3f} ({diff:+.2f} points)"
        spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        lines.append(f"| {name} | {statistics.mean(accs):.2f}{spread} | {init:.1f} | {init / epoch:.2f} | {p} |")
        points.append((name, init / epoch, statistics.mean(accs)))
    _plot(points, out / "init_accuracy_vs_cost.png")
    return "\n".join(lines)


def _plot(points, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, cost, acc in points:
        ax.scatter(cost, acc)
        ax.annotate(name, (cost, acc), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("prompt init time / training epoch")
    ax.set_ylabel("test accuracy (%), mean of 3 seeds")
    ax.set_title("SPT-deep on the demo: init cost vs accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("--out", type=Path, default=Path("logs/init_study"))
    args, extra = parser.parse_known_args()
    if args.command == "run":
        run(args.out, extra)
    print(table(args.out))


if __name__ == "__main__":
    main()
