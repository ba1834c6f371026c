"""VIPAMIN's forms against SPT's k-means on the demo (SPT-deep's architecture, P = 10, the demo recipe,
seeds 0-2): the authors' code (layer 1 takes block 11's value projection, the orthogonal part at the scale
``pinv(W_V)`` gives it), each layer's own value projection, and the orthogonal part rescaled to the
matching part's or to the tokens' norm. K = 8, lambda = 0.5 throughout. Every run also records the
prompt-token analysis (``callbacks=prompt_analysis``); VPT's xavier init runs beside them for it.

    python benchmarks/vipamin_forms.py run --out logs/vipamin_forms     # 6 forms x 3 seeds (about 90 minutes on 2 cores)
    python benchmarks/vipamin_forms.py table --out logs/vipamin_forms
    python benchmarks/vipamin_forms.py analysis --out logs/vipamin_forms   # prompt-token dependence per epoch

Paired against k-means as ``compare.py`` pairs settings (per seed and across seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import compare

FORMS = {  # folder -> overrides; the reference first
    "kmeans": ["prompt.init=kmeans"],
    "vipamin_code": ["prompt.init=vipamin"],
    "vipamin_match": ["prompt.init=vipamin", "init.vipamin_orth_scale=match"],
    "vipamin_tokens": ["prompt.init=vipamin", "init.vipamin_orth_scale=tokens"],
    "xavier": ["prompt.init=xavier"],  # VPT-deep: the analysis' other side
    "vipamin_own": ["prompt.init=vipamin", "init.vipamin_values=own"],
}


def run(out: Path, extra: list[str]) -> None:
    compare.run(out, FORMS, ["method=spt_deep", "init.cache_dir=null", "callbacks=[default,prompt_analysis]", *extra])


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
    print(analysis(args.out) if args.command == "analysis" else compare.table(args.out, FORMS, args.reference))


if __name__ == "__main__":
    main()
