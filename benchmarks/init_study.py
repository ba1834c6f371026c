"""Prototype init: accuracy against cost, on the demo (SPT-deep, bundled DINOv2 ViT-S/14, Animal-MNIST).

Each variant trains the demo with 3 seeds through the real command line; every run keeps which test
images it got right (``test_correct`` in results.json), so two variants are compared image by image:
McNemar's exact test per seed against every-token k-means (each on one seed's test images; the seeds share
the images, so pooling their pairs, as this script did before, overstates the evidence) and a paired
t-test across the seeds.

    python benchmarks/init_study.py run --out logs/init_study      # 5 variants x 3 seeds (about an hour on 2 cores)
    python benchmarks/init_study.py cost --out logs/init_study     # init / epoch of each, side by side (minutes)
    python benchmarks/init_study.py table --out logs/init_study    # the table, the p-values and a plot
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

from scipy.stats import ttest_rel

from spt_lightning.report.stats import mcnemar, p_value

MEASURED_AS = {"layer0": "embedded", "transforms": "eval"}  # the settings the table's runs had in common
VARIANTS = {  # name -> init settings (conf/init keys); the reference first
    "kmeans, every token": {"strategy": "kmeans", "tokens_per_prompt": None},
    "kmeans, 256*P tokens": {"strategy": "kmeans", "tokens_per_prompt": 256},
    "kmeans, every token of 25% of images": {"strategy": "kmeans", "tokens_per_prompt": None, "data_fraction": 0.25},
    "kmeans, every token of 10% of images": {"strategy": "kmeans", "tokens_per_prompt": None, "data_fraction": 0.1},
    "random tokens": {"strategy": "random", "tokens_per_prompt": None},
    "kmeans, 256*P tokens, layer 0 before position embedding": {"strategy": "kmeans", "tokens_per_prompt": 256,
                                                                 "layer0": "patch_embed"},
}
VARIANTS = {name: {**MEASURED_AS, **settings} for name, settings in VARIANTS.items()}
SEEDS = "0,1,2"


def _folder(out: Path, name: str) -> Path:
    return out / re.sub(r"[^\w.]+", "_", name).strip("_")


def _overrides(settings: dict) -> list[str]:
    keys = {"strategy": "prompt.init"}
    return [f"{keys.get(k, 'init.' + k)}={'null' if v is None else v}" for k, v in settings.items()]


def run(out: Path, extra: list[str]) -> None:
    """Train every variant not run yet (a variant's folder with multirun.yaml is done)."""
    for name, settings in VARIANTS.items():
        folder, overrides = _folder(out, name), _overrides(settings)
        if (folder / "multirun.yaml").exists():
            continue
        print(f"== {name}: {' '.join(overrides)}", flush=True)
        subprocess.run([sys.executable, "-m", "spt_lightning", "-m", f"seed={SEEDS}", *overrides, *extra,
                        f"hydra.sweep.dir={folder}", "init.cache_dir=null"], check=False)


def cost(out: Path) -> None:
    """Init time / training epoch of every variant not in ``cost.json`` yet, measured side by side in this one
    process at the demo's geometry (``prototype_init.py``; the training runs' own timings are too noisy on a
    shared machine)."""
    import prototype_init

    path = out / "cost.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for name, settings in VARIANTS.items():  # the ones not measured yet
        if name not in rows:
            rows[name] = prototype_init.run("demo", None, 10, 32, 2, "cpu", "auto", 20, settings)
            path.write_text(json.dumps(rows, indent=2))


def table(out: Path) -> str:
    runs = {name: sorted((json.loads(p.read_text()) for p in _folder(out, name).rglob("results.json")),
                         key=lambda r: r["seed"]) for name in VARIANTS}
    costs = json.loads((out / "cost.json").read_text()) if (out / "cost.json").exists() else {}
    reference_name = next(iter(VARIANTS))
    reference = {r["seed"]: r for r in runs[reference_name]}
    lines = ["| init | test acc. (%, mean ± std) | vs every-token k-means, per seed (points; McNemar p) | paired t p | "
             "init (s) | init / training epoch |", "| --- | --- | --- | --- | --- | --- |"]
    points = []
    for name, rs in runs.items():
        rs = [r for r in rs if r["status"] == "ok"]
        if not rs:
            continue
        accs = [100 * r["test"]["acc1"] for r in rs]
        if name in costs:  # measured side by side (``cost``)
            init, ratio = costs[name]["init_s"], costs[name]["init_per_epoch"]
        else:  # the training runs' own timings
            init = statistics.mean(r["timings"]["init"] for r in rs)
            ratio = init / statistics.mean(r["timings"]["train"] / r["selection"]["epochs"] for r in rs)
        pairs = [(r, reference[r["seed"]]) for r in rs if r["seed"] in reference]
        diffs = "; ".join(f"{100 * (r['test']['acc1'] - q['test']['acc1']):+.2f} "
                          f"(p {p_value(mcnemar(r['test_correct'], q['test_correct']))})" for r, q in pairs)
        t = ttest_rel([r["test"]["acc1"] for r, _ in pairs], [q["test"]["acc1"] for _, q in pairs]).pvalue \
            if len(pairs) > 1 else float("nan")
        p = ("—", "—") if name == reference_name else (diffs, p_value(t) if t == t else "—")
        spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        lines.append(f"| {name} | {statistics.mean(accs):.2f}{spread} ({len(accs)} seeds) | {p[0]} | {p[1]} | "
                     f"{init:.1f} | {ratio:.2f} |")
        points.append((name, ratio, statistics.mean(accs)))
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
    ax.margins(x=0.3, y=0.15)  # room for the labels
    ax.set_xlabel("prompt init time / training epoch")
    ax.set_ylabel("test accuracy (%), mean of 3 seeds")
    ax.set_title("SPT-deep on the demo: init cost vs accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "cost", "table"))
    parser.add_argument("--out", type=Path, default=Path("logs/init_study"))
    args, extra = parser.parse_known_args()
    if args.command == "run":
        run(args.out, extra)
    elif args.command == "cost":
        cost(args.out)
    print(table(args.out))


if __name__ == "__main__":
    main()
