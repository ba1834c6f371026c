"""Settings compared on the demo, 3 seeds each, paired per seed on the same test images: the runner and the
table that ``vipamin_forms.py`` and ``methods_demo.py`` share.

Per seed: the difference to the reference setting and McNemar's exact test on that seed's test images (one
test per seed: the seeds share the test images, so pooling their pairs would overstate the evidence);
across seeds a paired t-test of the accuracies (scipy.stats.ttest_rel).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from scipy.stats import ttest_rel

from spt_lightning.report.stats import mcnemar, p_value

SEEDS = "0,1,2"


def run(out: Path, settings: dict[str, list[str]], common: list[str]) -> None:
    """Train every setting (folder name -> overrides) whose folder has fewer than 3 results, seeds 0-2."""
    for name, overrides in settings.items():
        if len(list((out / name).rglob("results.json"))) >= 3:
            continue
        print(f"== {name}: {' '.join(overrides)}", flush=True)
        subprocess.run([sys.executable, "-m", "spt_lightning", "-m", f"seed={SEEDS}", *common, *overrides,
                        f"hydra.sweep.dir={out / name}"], check=False)


def finished(out: Path, names) -> dict[str, dict[int, dict]]:
    """Per setting, its finished runs' results.json by seed."""
    return {name: {r["seed"]: r for r in map(lambda p: json.loads(p.read_text()), (out / name).rglob("results.json"))
                   if r["status"] == "ok"} for name in names}


def table(out: Path, settings: dict[str, list[str]], reference_name: str, parameters: bool = False) -> str:
    """A markdown table: test accuracy (mean ± std over seeds), per-seed differences to ``reference_name``
    with McNemar's p, the paired t-test's p; with ``parameters``, the learnable parameters (without head)."""
    runs = finished(out, settings)
    reference = runs[reference_name]
    extra = " learnable params (without head) |" if parameters else ""
    lines = [f"| setting | test acc. (%, mean ± std) | vs {reference_name} per seed (points; McNemar p) | "
             f"paired t-test p (3 seeds) |{extra}", "| --- | --- | --- | --- |" + (" --- |" if parameters else "")]
    for name, by_seed in runs.items():
        if not by_seed:
            continue
        accs = [100 * by_seed[s]["test"]["acc1"] for s in sorted(by_seed)]
        cell = f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else f"{accs[0]:.2f}"
        count = ""
        if parameters:
            p = next(iter(by_seed.values()))["parameters"]
            count = f" {p['learnable']:,} ({p['learnable_without_head']:,}) |"
        seeds = sorted(set(by_seed) & set(reference))
        if name == reference_name or not seeds:
            lines.append(f"| {' '.join(settings[name])} | {cell} | — | — |{count}")
            continue
        per_seed = "; ".join(f"{100 * (by_seed[s]['test']['acc1'] - reference[s]['test']['acc1']):+.2f} "
                             f"(p {p_value(mcnemar(by_seed[s]['test_correct'], reference[s]['test_correct']))})"
                             for s in seeds)
        ours, theirs = [by_seed[s]["test"]["acc1"] for s in seeds], [reference[s]["test"]["acc1"] for s in seeds]
        t = p_value(ttest_rel(ours, theirs).pvalue) if len(seeds) > 1 else "—"
        lines.append(f"| {' '.join(settings[name])} | {cell} | {per_seed} | {t} |{count}")
    return "\n".join(lines)


def curves(out: Path, settings: dict[str, list[str]]) -> str:
    """How each setting trained, from its runs' ``csv/metrics.csv``: val accuracy after the first epoch, and
    the last epoch's training loss and val accuracy (means over its finished seeds): where a setting learns
    slowly or not at all, measured rather than guessed."""
    import csv

    lines = ["| setting | val acc. after epoch 1 (%) | last train loss | last val acc. (%) | seeds |",
             "| --- | --- | --- | --- | --- |"]
    for name, by_seed in finished(out, settings).items():
        first, loss, last = [], [], []
        for run in by_seed.values():
            with open(Path(run["output_dir"]) / "csv" / "metrics.csv", newline="") as f:
                rows = list(csv.DictReader(f))
            val = [float(r["val/acc1"]) for r in rows if r.get("val/acc1")]
            train = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
            first.append(100 * val[0]), last.append(100 * val[-1]), loss.append(train[-1])
        if by_seed:
            lines.append(f"| {name} | {statistics.mean(first):.1f} | {statistics.mean(loss):.3f} | "
                         f"{statistics.mean(last):.1f} | {len(by_seed)} |")
    return "\n".join(lines)
