"""The report's tables from its records: the markdown table (per task mean ± std over seeds, the group
means, init time, the pairing with SPT k-means, parameter counts) and report.csv, with the published
numbers beside. Tables follow the benchmarks' protocol: top-1 test accuracy (%) per task as mean ± std over
seeds, the FGVC mean over its 5 tasks, the VTAB-1k group means (Natural 7, Specialized 4, Structured 8) and
both overall conventions (mean of the 19 tasks; mean of the 3 group means), and learnable parameters with
and without the head."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path

from .pairing import beside_published, published_for
from .records import Entry, Setting, catalogue, mean
from .stats import paired_vs_kmeans, per_seed_mcnemar


def _cell(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _task_order(settings) -> list[str]:
    seen = {t for e in settings.values() for t in e.tasks}
    known = [t for tasks in catalogue().values() for t in tasks]
    return [t for t in known if t in seen] + sorted(seen - set(known))


def varying(settings: dict[Setting, Entry]) -> list[str]:
    """Config keys whose value differs between settings (shown as columns besides method/pretrain/...)."""
    values: dict[str, set] = defaultdict(set)
    keys = [dict(key.config) for key in settings]
    for config in keys:
        for k in set().union(*keys):
            values[k].add(config.get(k))
    shown = {"backbone.arch", "prompt.length"}
    # follow from the method / pretrain columns; init.strategy is prompt.init
    implied = ("method.", "pretrain.", "init.strategy")
    return sorted(k for k, v in values.items() if len(v) > 1 and k not in shown and not k.startswith(implied))


def markdown(settings: dict[Setting, Entry], unfinished: list[dict]) -> str:
    tasks = _task_order(settings)
    # the groups some setting has every task of (the others would be empty columns)
    group_names = list(dict.fromkeys(g for e in settings.values() for g, v in e.groups.items() if v is not None))
    extra = varying(settings)
    head = ["method", "pretrain", "backbone", "P", *extra, *tasks, *group_names, "init (s)",
            "vs SPT k-means (points; paired t over seeds)",
            "learnable (% backbone)", "without head"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, e in sorted(settings.items(), key=lambda kv: kv[0].order()):
        p = e.params
        cells = [*map(str, key.columns), *(str(key.value(k)) if key.has(k) else "" for k in extra),
                 *(_cell(e.tasks.get(t, [])) for t in tasks),
                 *("" if e.groups[g] is None else f"{e.groups[g]:.2f}" for g in group_names),
                 f"{mean(e.init_s):.1f}", paired_vs_kmeans(settings, key),
                 f"{p['learnable']:,} ({100 * p['learnable'] / p['backbone']:.3f}%)",
                 f"{p['learnable_without_head']:,} ({100 * p['learnable_without_head'] / p['backbone']:.3f}%)"]
        lines.append("| " + " | ".join(cells) + " |")
    out = "Top-1 test accuracy (%), mean ± std over seeds. Group means need every task of the group.\n\n"
    out += "\n".join(lines) + "\n" + per_seed_mcnemar(settings) + beside_published(settings)
    repeated = [pair for e in settings.values() for pair in e.repeated]
    if repeated:
        out += (f"\n{len(repeated)} run(s) repeat the seed of another run of their setting and task (counted "
                f"once):\n" + "".join(f"- {a} repeats {b}\n" for a, b in repeated))
    for status in ("failed", "interrupted"):
        runs = [r for r in unfinished if r.get("status") == status]
        if runs:
            out += f"\n{len(runs)} {status} run(s):\n" + "".join(f"- {r['path']}: {r.get('error', '?')}\n" for r in runs)
    return out


def write_csv(settings: dict[Setting, Entry], path: Path) -> None:
    extra = varying(settings)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*Setting.COLUMNS, *extra, "task", "seeds", "mean", "std", "published", "published_source",
                    "published_selection", "published_weights", "images"])
        for key, e in settings.items():
            fixed = [*key.columns, *(key.value(k) if key.has(k) else "" for k in extra)]
            numbers = published_for(key, e)

            def beside(name: str) -> list[str]:
                number = numbers.get(name)
                published = [f"{number.top1:.2f}", number.source, number.selection, number.weights] if number \
                    else ["", "", "", ""]
                return [*published, e.images or ""]

            for task, values in e.tasks.items():
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                w.writerow([*fixed, task, len(values), f"{mean(values):.4f}", f"{std:.4f}", *beside(task)])
            for group, value in e.groups.items():
                if value is not None:
                    w.writerow([*fixed, group, "", f"{value:.4f}", "", *beside(group)])
