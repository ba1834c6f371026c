"""VIPAMIN's forms against SPT's k-means on the demo (SPT-deep's architecture, P = 10, the demo recipe,
seeds 0-2): the authors' code (layer 1 takes block 11's value projection, the orthogonal part at the scale
``pinv(W_V)`` gives it), each layer's own value projection, and the orthogonal part rescaled to the
matching part's or to the tokens' norm. K = 8, lambda = 0.5 throughout. Every run also records the
prompt-token analysis (``callbacks=prompt_analysis``); VPT's xavier init runs beside them for it.

    python benchmarks/vipamin_forms.py run --out logs/vipamin_forms     # 6 forms x 3 seeds (about 90 minutes on 2 cores)
    python benchmarks/vipamin_forms.py table --out logs/vipamin_forms
    python benchmarks/vipamin_forms.py analysis --out logs/vipamin_forms   # prompt-token dependence per epoch

Paired against k-means: per seed the difference and McNemar's exact test on that seed's test images
(one test per seed: the seeds share the same test images, so pooling their pairs would overstate the
evidence), and across seeds a paired t-test of the accuracies (scipy.stats.ttest_rel).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from scipy.stats import ttest_rel

from spt_lightning.report import mcnemar, p_value

FORMS = {  # folder -> overrides; the reference first
    "kmeans": ["prompt.init=kmeans"],
    "vipamin_code": ["prompt.init=vipamin"],
    "vipamin_match": ["prompt.init=vipamin", "init.vipamin_orth_scale=match"],
    "vipamin_tokens": ["prompt.init=vipamin", "init.vipamin_orth_scale=tokens"],
    "xavier": ["prompt.init=xavier"],  # VPT-deep: the analysis' other side
    "vipamin_own": ["prompt.init=vipamin", "init.vipamin_values=own"],
}
SEEDS = "0,1,2"


def run(out: Path, extra: list[str]) -> None:
    """Train every form whose folder has fewer than 3 results."""
    for name, overrides in FORMS.items():
        if len(list((out / name).rglob("results.json"))) >= 3:
            continue
        print(f"== {name}: {' '.join(overrides)}", flush=True)
        subprocess.run([sys.executable, "-m", "spt_lightning", "-m", f"seed={SEEDS}", "method=spt_deep",
                        "init.cache_dir=null", "callbacks=[default,prompt_analysis]", *overrides, *extra,
                        f"hydra.sweep.dir={out / name}"], check=False)


def table(out: Path, reference_name: str = "kmeans") -> str:
    runs = {name: {r["seed"]: r for r in map(lambda p: json.loads(p.read_text()), (out / name).rglob("results.json"))
                   if r["status"] == "ok"} for name in FORMS}
    reference = runs[reference_name]
    lines = [f"| `prompt.init` form | test acc. (%, mean ± std) | vs {reference_name} per seed (points; McNemar p) | "
             "paired t-test p (3 seeds) |", "| --- | --- | --- | --- |"]
    for name, by_seed in runs.items():
        if not by_seed:
            continue
        accs = [100 * by_seed[s]["test"]["acc1"] for s in sorted(by_seed)]
        cell = f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else f"{accs[0]:.2f}"
        seeds = sorted(set(by_seed) & set(reference))
        if name == reference_name or not seeds:
            lines.append(f"| {' '.join(FORMS[name])} | {cell} | — | — |")
            continue
        per_seed = "; ".join(f"{100 * (by_seed[s]['test']['acc1'] - reference[s]['test']['acc1']):+.2f} "
                             f"(p {p_value(mcnemar(by_seed[s]['test_correct'], reference[s]['test_correct']))})"
                             for s in seeds)
        ours, theirs = [by_seed[s]["test"]["acc1"] for s in seeds], [reference[s]["test"]["acc1"] for s in seeds]
        t = p_value(ttest_rel(ours, theirs).pvalue) if len(seeds) > 1 else "—"
        lines.append(f"| {' '.join(FORMS[name])} | {cell} | {per_seed} | {t} |")
    return "\n".join(lines)


def analysis(out: Path, epochs=(0, 1, 5, 10)) -> str:
    """Per form: prompt-token dependence and cosine to the nearest token, mean over layers, at the given
    epochs (0: right after the init), mean ± std over seeds; and the test accuracy."""
    import pandas as pd

    lines = [f"| `prompt.init` form | dependence, epoch {' → '.join(map(str, epochs))} | cosine to nearest token, "
             f"epoch {epochs[0]} → {epochs[-1]} | test acc. (%) |", "| --- | --- | --- | --- |"]
    for name, overrides in FORMS.items():
        finished = sorted(p.parent for p in (out / name).rglob("results.json"))  # runs still going are left out
        frames = [pd.read_csv(d / "prompt_analysis.csv").assign(seed=i) for i, d in enumerate(finished)
                  if (d / "prompt_analysis.csv").is_file()]
        if not frames:
            continue
        per_seed = pd.concat(frames).groupby(["seed", "epoch"])[["dependence", "cos_nearest"]].mean()
        stats = per_seed.groupby("epoch").agg(["mean", "std"])

        def cell(measure, epoch):
            mean, std = stats.loc[epoch, (measure, "mean")], stats.loc[epoch, (measure, "std")]
            return f"{mean:.3f}" + (f" ± {std:.3f}" if std == std else "")

        accs = [100 * json.loads((d / "results.json").read_text())["test"]["acc1"] for d in finished]
        lines.append(f"| {' '.join(overrides)} | {' → '.join(cell('dependence', e) for e in epochs)} | "
                     f"{cell('cos_nearest', epochs[0])} → {cell('cos_nearest', epochs[-1])} | "
                     f"{statistics.mean(accs):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "table", "analysis"))
    parser.add_argument("--out", type=Path, default=Path("logs/vipamin_forms"))
    parser.add_argument("--reference", default="kmeans", choices=list(FORMS), help="the form each is paired with")
    args, extra = parser.parse_known_args()
    if args.command == "run":
        run(args.out, extra)
    print(analysis(args.out) if args.command == "analysis" else table(args.out, args.reference))


if __name__ == "__main__":
    main()
