"""``python -m spt_lightning.report DIR... [--out DIR]``: run folders → paper-style tables and plots.

Reads ``results.json`` files only (no training imports). Tables follow the benchmarks' protocol:
top-1 test accuracy (%) per task as mean ± std over seeds, the FGVC mean over its 5 tasks, the
VTAB-1k group means (Natural 7, Specialized 4, Structured 8) and both overall conventions (mean of
the 19 tasks; mean of the 3 group means), and learnable parameters with and without the head.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from .errors import SptError
from .files import file_name
from .published import (AUTHORS_FORM, SELECTIONS, SOURCES, Number, computed_mean, convention, published, standing,
                        weights_of)
from .results import RESULTS, read_results
from .settings import INIT_KEYS, settings

GROUP_TITLES = {"fgvc": "FGVC", "vtab_natural": "VTAB Natural", "vtab_specialized": "VTAB Specialized",
                "vtab_structured": "VTAB Structured"}


@functools.cache
def catalogue() -> dict[str, list[str]]:
    """Each benchmark group's tasks: the ``group`` of each task as Hydra composes it, in the order of the
    ready sweeps that list them (experiment/fgvc_all, vtab_all: the papers' order). Composed on first use."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    from .config import compose_train

    groups: dict[str, list[str]] = defaultdict(list)
    for sweep in ("fgvc_all", "vtab_all"):
        with (files("spt_lightning.conf") / "experiment" / f"{sweep}.yaml").open() as f:
            tasks = str(OmegaConf.load(f).hydra.sweeper.params.task).split(",")
        for task in tasks:
            groups[compose_train([f"task={task}"]).task.group].append(task)
    return dict(groups)


SETTING = ("method", "pretrain", "backbone", "prompt_length")
# Beside the keys that never change a result (settings.NEUTRAL), what does not make a run another setting:
# its seed (runs that differ only in it are averaged), its task (a column), and the keys that `tune` chose
# for its task (``tuned``: a per-task choice, so a study's final runs form one setting). The prototype-init
# callback's node is the ``init`` node again (``callbacks.prototype_init: ${init}``), compared there.
NOT_SETTING = ("seed", "init.seed", "task.", "tuned", "callbacks.prototype_init.")


def setting_of(run: dict[str, Any]) -> tuple:
    """The run's settings without its seed, task and tuned keys: runs with equal ones are seeds of one entry."""
    config = run.get("config", {})
    tuned = set(config.get("tuned") or [])
    flat = {k: json.dumps(v) for k, v in settings(config).items()
            if k not in tuned and not any(k == n or k.startswith(n if n.endswith(".") else f"{n}.") for n in NOT_SETTING)}
    return tuple(run.get(k) for k in SETTING) + (tuple(sorted(flat.items())),)


def load_runs(dirs: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for d in dirs:
        for path in sorted(Path(d).rglob(RESULTS)):
            if any(part.startswith(".") for part in path.relative_to(d).parts[:-1]):
                continue  # a run set aside while overwrite=true replaces it (runs.REPLACED)
            run = read_results(path)
            run["path"] = str(path.parent)
            runs.append(run)
    return runs


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(runs: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Per setting: per-task test accuracies over seeds, the group figures, and parameter counts."""
    entries: dict[tuple, dict[str, Any]] = defaultdict(
        lambda: {"tasks": defaultdict(list), "group_of": {}, "params": None, "correct": {}, "init_s": [],
                 "seeds": defaultdict(dict), "repeated": [], "standard": True})
    for run in runs:
        if run.get("status", "ok") != "ok" or not run.get("test"):
            continue  # failed, or a tune run (no test by protocol)
        entry = entries[setting_of(run)]
        seeds = entry["seeds"][run["task"]]
        if run.get("seed") in seeds:  # the same run twice (a copy, a rerun): counted once, flagged
            entry["repeated"].append((run.get("path"), seeds[run.get("seed")]))
            continue
        seeds[run.get("seed")] = run.get("path")
        # published numbers go beside runs on the papers' splits only (results.json "splits"); JPEG images marked
        entry["standard"] &= bool(run.get("splits", {}).get("standard"))
        images = run.get("splits", {}).get("images")
        entry["images"] = images if entry.get("images") in (None, images) else "mixed"
        entry["tasks"][run["task"]].append(100.0 * run["test"]["acc1"])
        entry["group_of"][run["task"]] = run.get("group")  # the group each result carries
        entry["params"] = run["parameters"]
        if run.get("test_correct"):  # which test images it got right: for paired tests between settings
            entry["correct"][(run["task"], run.get("seed"))] = run["test_correct"]
        entry["init_s"].append(run.get("timings", {}).get("init", 0.0))
    for entry in entries.values():
        per_task = {t: _mean(v) for t, v in entry["tasks"].items()}
        entry["per_task"] = per_task
        members = defaultdict(list)
        for task, group in entry["group_of"].items():
            members[group].append(task)
        # a group's mean needs every task of the group (as many as the catalogue has)
        entry["groups"] = {title: _mean([per_task[t] for t in members[g]]) if len(members[g]) == len(catalogue()[g])
                           else None for g, title in GROUP_TITLES.items()}
        vtab = [g for g in GROUP_TITLES if g.startswith("vtab_")]
        complete = all(entry["groups"][GROUP_TITLES[g]] is not None for g in vtab)
        tasks = [t for g in vtab for t in members[g]]
        entry["groups"]["VTAB mean of 19 tasks"] = _mean([per_task[t] for t in tasks]) if complete else None
        entry["groups"]["VTAB mean of 3 groups"] = _mean([entry["groups"][GROUP_TITLES[g]] for g in vtab]) \
            if complete else None
    return dict(entries)


def mcnemar(a: str, b: str) -> float:
    """Two-sided exact McNemar p-value of two equally long right/wrong strings ("1"/"0" per test image): the
    exact binomial test of the discordant images (scipy)."""
    from scipy.stats import binomtest

    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b))
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def kmeans_init(key) -> bool:
    """Whether a setting's prompts start from SPT's k-means (a setting without prompts has no init)."""
    return bool(key[3]) and json.loads(dict(key[-1]).get("prompt.init", "null")) == "kmeans"


def kmeans_reference(settings, key) -> dict[str, Any] | None:
    """SPT k-means of the same setting otherwise (the same but for the method and its prompt init); for
    another method (LoRA, adapters, E²VPT, ...), SPT-deep k-means under the same recipe, data, pretrain and
    backbone when exactly one such setting is there."""
    def beside_init(k):
        return k[1:4] + (tuple((c, v) for c, v in k[-1] if c not in INIT_KEYS),)

    def beside_method(k):  # what a method's own keys (method.*, prompt.*) leave
        return k[1:3] + (tuple((c, v) for c, v in k[-1] if c not in INIT_KEYS and not c.startswith(("method.", "prompt."))),)

    same = [e for k, e in settings.items() if k != key and kmeans_init(k) and beside_init(k) == beside_init(key)]
    if same:
        return same[0]
    spt = [e for k, e in settings.items() if k != key and k[0] == "spt_deep" and kmeans_init(k)
           and beside_method(k) == beside_method(key)]
    return spt[0] if len(spt) == 1 and not kmeans_init(key) else None


def _paired(entry, reference) -> list[tuple[str, Any, float, float]]:
    """(task, seed, ours, reference's) of every task and seed both ran."""
    out = []
    for task in sorted(set(entry["seeds"]) & set(reference["seeds"])):
        ours, theirs = (dict(zip(e["seeds"][task], e["tasks"][task])) for e in (entry, reference))
        out += [(task, seed, ours[seed], theirs[seed]) for seed in sorted(set(ours) & set(theirs), key=str)]
    return out


def paired_vs_kmeans(settings, key) -> str:
    """This setting against SPT k-means of the same setting otherwise: the mean difference in points over
    the (task, seed) pairs both ran and a paired t-test across those pairs (the seeds are the replicates;
    their test images are the same, so the images of several seeds are not independent samples)."""
    if kmeans_init(key):
        return "ref." if any(kmeans_reference(settings, k) is settings[key] for k in settings) else ""
    reference = kmeans_reference(settings, key)
    pairs = _paired(settings[key], reference) if reference else []
    if not pairs:
        return ""
    diffs = [ours - theirs for _, _, ours, theirs in pairs]
    cell = f"{sum(diffs) / len(diffs):+.2f}"
    if len(pairs) < 2 or len(set(diffs)) == 1:
        return f"{cell} (p: needs seeds that differ)"
    from scipy.stats import ttest_rel

    return f"{cell} (p {p_value(float(ttest_rel([p[2] for p in pairs], [p[3] for p in pairs]).pvalue))})"


def per_seed_mcnemar(settings) -> str:
    """Per setting, task and seed against SPT k-means: McNemar's exact test on that seed's test images."""
    lines = []
    for key, e in sorted(settings.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        reference = kmeans_reference(settings, key)
        if reference is None or kmeans_init(key):
            continue
        tests = [f"{task} seed {seed}: {p_value(mcnemar(e['correct'][(task, seed)], reference['correct'][(task, seed)]))}"
                 for task, seed, _, _ in _paired(e, reference)
                 if (task, seed) in e["correct"] and (task, seed) in reference["correct"]]
        if tests:
            init = json.loads(dict(key[-1]).get("prompt.init", "null"))
            lines.append(f"- {key[0]} / {init}: " + "; ".join(tests))
    return ("\nMcNemar's exact test against SPT k-means, one per task and seed (each on that seed's test images; "
            "pooling seeds would count the same images several times):\n" + "\n".join(lines) + "\n") if lines else ""


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _own_init(method: str) -> str | None:
    """The prompt init a method config sets (conf/method/<method>.yaml), None for an unknown method."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    path = files("spt_lightning.conf") / "method" / f"{method}.yaml"
    if not path.is_file():
        return None
    with path.open() as f:
        return OmegaConf.load(f).get("prompt", {}).get("init")


def published_for(key: tuple, entry: dict[str, Any]) -> dict[str, Number]:
    """The published numbers of this setting's method (with its prompt init where that is not the method's
    own, e.g. VIPAMIN), pretrain and backbone, measured on the same weights (``published.WEIGHTS``), when it
    ran the papers' protocol (``data.protocol=final``) on the papers' splits (every run's
    ``splits.standard``); a group's mean of published per-task values (of one selection rule) where the
    paper's own is not shipped. ``{task or group title: Number}``."""
    config = dict(key[-1])
    if json.loads(config.get("data.protocol", "null")) != "final" or not entry["standard"]:
        return {}
    own, init = _own_init(key[0]), json.loads(config.get("prompt.init", "null"))
    form = {**AUTHORS_FORM.get(key[0], {}), **AUTHORS_FORM.get(init, {})}
    if any(json.loads(config.get(k, "null")) not in (v, None) for k, v in form.items()):
        return {}  # another form than the one its authors published (e.g. VIPAMIN's orthogonal part rescaled)
    numbers = {name: n for name, n in published(*key[:3], init="" if None in (own, init) or init == own else init
                                                ).items()  # own None: no prompts
               if n.weights == weights_of(key[1], key[2])}
    for group, title in GROUP_TITLES.items():
        if title not in numbers and (mean := computed_mean(numbers, catalogue().get(group, []))) is not None:
            numbers[title] = mean
    return numbers


def beside_published(settings) -> str:
    """Each of our figures whose setting has a published one: ours, published, the difference, how both are
    averaged, the source."""
    lines, used = [], []
    for key, e in sorted(settings.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        numbers = published_for(key, e)
        ours = {**e["per_task"], **{g: v for g, v in e["groups"].items() if v is not None}}
        jpeg = "*" if e.get("images") in ("jpeg", "mixed") else ""
        for name, value in ours.items():
            if name in numbers:
                number = numbers[name]
                used += [number.source] if number.source not in used else []
                lines.append(f"| {' | '.join(map(str, key[:4]))} | {name} | {value:.2f}{jpeg} | {number.top1:.2f} | "
                             f"{value - number.top1:+.2f} | {convention(name)} | {SELECTIONS[number.selection]} | "
                             f"{number.weights} | [{used.index(number.source) + 1}] |")
    if not lines:
        return ""
    head = ("| method | pretrain | backbone | P | task / group | ours | published | ours − published | averaged as "
            "| published number chosen by | weights | source |")
    notes = "".join(f"[{i + 1}] {SOURCES[s]}\n" for i, s in enumerate(used))
    if any("*" in line.split(" | ")[5] for line in lines):
        notes += ("\n\\* our runs read JPEG images (a NOAH-style VTAB-1k folder, `splits.images` in results.json): "
                  "JPEG re-encoding moves some tasks by points (CIFAR-100 by 10-15 between pipelines, "
                  "adapter_plus issue 3); the published numbers of VPT's and SPT's code read TFDS's decoded images.\n")
    return ("\nBeside the published numbers (same method, prompt init, pretrain and weights, backbone; "
            "`data.protocol=final` on the papers' splits; ours averaged as the published number is: a task over seeds, "
            "a group over its tasks, the VTAB overall figure in the convention its name says; ours are chosen on val "
            "and tested at the last epoch, so a published number chosen on test is not like for like):\n\n"
            + head + "\n|" + " --- |" * 12 + "\n" + "\n".join(lines) + "\n\n" + notes)


def _cell(values: list[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{_mean(values):.2f} ± {statistics.stdev(values):.2f}"


def _task_order(settings) -> list[str]:
    seen = {t for e in settings.values() for t in e["tasks"]}
    known = [t for tasks in catalogue().values() for t in tasks]
    return [t for t in known if t in seen] + sorted(seen - set(known))


def varying(settings) -> list[str]:
    """Config keys whose value differs between settings (shown as columns besides method/pretrain/...)."""
    values: dict[str, set] = defaultdict(set)
    keys = [dict(key[-1]) for key in settings]
    for config in keys:
        for k in set().union(*keys):
            values[k].add(config.get(k))
    shown = {"backbone.arch", "prompt.length"}
    # follow from the method / pretrain columns; init.strategy is prompt.init
    implied = ("method.", "pretrain.", "init.strategy")
    return sorted(k for k, v in values.items() if len(v) > 1 and k not in shown and not k.startswith(implied))


def markdown(settings, unfinished: list[dict]) -> str:
    tasks = _task_order(settings)
    # the groups some setting has every task of (the others would be empty columns)
    group_names = list(dict.fromkeys(g for e in settings.values() for g, v in e["groups"].items() if v is not None))
    extra = varying(settings)
    head = ["method", "pretrain", "backbone", "P", *extra, *tasks, *group_names, "init (s)",
            "vs SPT k-means (points; paired t over seeds)",
            "learnable (% backbone)", "without head"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, e in sorted(settings.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        p = e["params"]
        config = dict(key[-1])
        cells = [*map(str, key[:-1]), *(str(json.loads(config[k])) if k in config else "" for k in extra),
                 *(_cell(e["tasks"].get(t, [])) for t in tasks),
                 *("" if e["groups"][g] is None else f"{e['groups'][g]:.2f}" for g in group_names),
                 f"{_mean(e['init_s']):.1f}", paired_vs_kmeans(settings, key),
                 f"{p['learnable']:,} ({100 * p['learnable'] / p['backbone']:.3f}%)",
                 f"{p['learnable_without_head']:,} ({100 * p['learnable_without_head'] / p['backbone']:.3f}%)"]
        lines.append("| " + " | ".join(cells) + " |")
    out = "Top-1 test accuracy (%), mean ± std over seeds. Group means need every task of the group.\n\n"
    out += "\n".join(lines) + "\n" + per_seed_mcnemar(settings) + beside_published(settings)
    repeated = [pair for e in settings.values() for pair in e["repeated"]]
    if repeated:
        out += (f"\n{len(repeated)} run(s) repeat the seed of another run of their setting and task (counted "
                f"once):\n" + "".join(f"- {a} repeats {b}\n" for a, b in repeated))
    for status in ("failed", "interrupted"):
        runs = [r for r in unfinished if r.get("status") == status]
        if runs:
            out += f"\n{len(runs)} {status} run(s):\n" + "".join(f"- {r['path']}: {r.get('error', '?')}\n" for r in runs)
    return out


def write_csv(settings, path: Path) -> None:
    extra = varying(settings)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*SETTING, *extra, "task", "seeds", "mean", "std", "published", "published_source",
                    "published_selection", "published_weights", "images"])
        for key, e in settings.items():
            config = dict(key[-1])
            fixed = [*key[:-1], *(json.loads(config[k]) if k in config else "" for k in extra)]
            numbers = published_for(key, e)

            def beside(name: str) -> list[str]:
                number = numbers.get(name)
                published = [f"{number.top1:.2f}", number.source, number.selection, number.weights] if number \
                    else ["", "", "", ""]
                return [*published, e.get("images") or ""]

            for task, values in e["tasks"].items():
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                w.writerow([*fixed, task, len(values), f"{_mean(values):.4f}", f"{std:.4f}", *beside(task)])
            for group, value in e["groups"].items():
                if value is not None:
                    w.writerow([*fixed, group, "", f"{value:.4f}", "", *beside(group)])


def analysis_figures(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    """Runs with ``prompt_analysis.csv`` (``callbacks=prompt_analysis``): a layer x epoch heatmap each."""
    import pandas as pd

    from .plots import analysis_heatmap

    written = []
    for i, run in enumerate(runs):
        path = Path(run["path"]) / "prompt_analysis.csv"
        if path.exists():
            title = (f"{run['task']} {run['method']} {run.get('prompt_init') or ''} P{run['prompt_length']} "
                     f"seed {run.get('seed')}: prompt-token dependence")
            # (numbered: two settings of one method and init, e.g. VIPAMIN's forms, must not share a file)
            name = file_name(f"{i:03d}_{run['method']}_{run.get('prompt_init')}_seed{run.get('seed')}_dependence") + ".png"
            written.append(analysis_heatmap(pd.read_csv(path), title, out / "analysis" / name)[0])
    return written


def published_table() -> str:
    """Every shipped published number, method × pretrain on the report's columns (docs/published.md)."""
    columns = {GROUP_TITLES[g]: tasks for g, tasks in catalogue().items()}
    columns["VTAB mean of 19 tasks"] = [t for g, tasks in catalogue().items() if g.startswith("vtab_") for t in tasks]
    return standing(columns)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spt_lightning.report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="run or sweep folders (searched for results.json)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="folder for report.md, report.csv, *.png")
    parser.add_argument("--published", action="store_true",
                        help="print where SPT stands: every shipped published number on the same columns, and exit")
    args = parser.parse_args(argv)
    if args.published:
        print(published_table())
        return 0
    if not args.dirs:
        parser.error("give run or sweep folders (or --published)")
    try:
        runs = load_runs(args.dirs)
    except SptError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not runs:
        print(f"no results.json under {', '.join(map(str, args.dirs))}")
        return 1
    unfinished = [r for r in runs if r.get("status") in ("failed", "interrupted")]
    settings = aggregate(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    from .figures import draw_all
    from .paper import claims, draw

    paper_text, paper_files = draw(runs, args.out)  # the paper's tables and figures whose experiments ran
    text = markdown(settings, unfinished) + (f"\n## The paper's tables and figures\n{paper_text}\n" if paper_text
                                              else "") + claims(runs)
    (args.out / "report.md").write_text(text)
    write_csv(settings, args.out / "report.csv")
    ok = [r for r in runs if r.get("status") == "ok"]
    pngs = draw_all(ok, settings, args.dirs, args.out, setting_of, varying(settings), published_for)
    pngs += analysis_figures(ok, args.out) + paper_files
    print(text)
    print(f"written: {args.out / 'report.md'}, {args.out / 'report.csv'}" + "".join(f", {p}" for p in pngs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
