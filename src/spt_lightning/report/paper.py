"""The paper's tables and figures drawn from a user's runs, beside the published ones, and the abstract's claims
checked on them. ``report`` calls :func:`draw` and :func:`claims`; docs/paper.md maps each table and figure to its
experiment (``experiment=paper/<name>``), whose runs carry ``paper_figure``.

A figure is one function in :data:`FIGURES` taking the runs of its experiment and the output folder, returning
its markdown and the files it wrote (a table as markdown and CSV; a plot as PNG with the published points hollow
and ours filled, error bars over seeds). A claim compares runs only within one *frame* (:data:`FRAME`: the same
recipe, data, pretrain and backbone); runs of several frames are claimed per frame, and a claim that lacks runs
says which.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..files import file_name
from .published import SELECTIONS, figure_rows

# What makes runs comparable for a claim: the same recipe, protocol, data share, pretrain and backbone.
FRAME = ("recipe.name", "data.protocol", "data.fraction", "pretrain.name", "backbone.arch", "backbone.img_size")
SSL = ("mae", "mocov3")
MARK = {"test_best": " †", "unknown": " ?", "val_last": ""}


def _get(run: dict[str, Any], key: str) -> Any:
    node: Any = run.get("config", {})
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _acc(runs: list[dict[str, Any]]) -> list[float]:
    return [100 * r["test"]["acc1"] for r in runs if r.get("test", {}).get("acc1") is not None]


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def _frame(run: dict[str, Any], free: tuple[str, ...] = ()) -> tuple:
    return tuple((k, json.dumps(_get(run, k))) for k in FRAME if k not in free)


def _by(runs: list[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    """Runs grouped by ``keys``: a results field (``task``, ``method``) or a config key (``prompt.trainable``)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[tuple(run[k] if k in run else _get(run, k) for k in keys)].append(run)
    return groups


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _published(figure: str, **match: str) -> dict[str, Any] | None:
    found = [r for r in figure_rows(figure) if all(r.get(k) == v for k, v in match.items())]
    return found[0] if found else None


# ---- the tables and figures ----------------------------------------------------------------------------
def table1(runs: list[dict[str, Any]], out: Path) -> tuple[str, list[Path]]:
    """Prompt init x (pretrain, task), prompts frozen (a) and learnable (b): ours beside the page's numbers."""
    columns = [("sup_in21k_augreg", "fgvc/cub"), ("sup_in21k_augreg", "vtab/caltech101"), ("mae", "fgvc/cub"),
               ("mae", "vtab/caltech101")]
    seen = sorted({(r["pretrain"], r["task"]) for r in runs})
    columns = [c for c in columns if c in seen] + [c for c in seen if c not in columns]
    groups = _by(runs, "prompt_init", "prompt.trainable", "pretrain", "task")
    text, rows = [], []
    for half, trainable in (("table1a", False), ("table1b", True)):
        head = "| prompt init | " + " | ".join(f"{p} {t}: ours / published" for p, t in columns) + " |"
        lines = [f"**Table 1{half[-1]}**: prompts {'learnable' if trainable else 'frozen after the init'}", "",
                 head, "|" + " --- |" * (len(columns) + 1)]
        for init in ("xavier", "kmeans", "mean_pool", "max_pool", "random"):
            cells = []
            for pretrain, task in columns:
                ours = _acc(groups.get((init, trainable, pretrain, task), []))
                theirs = _published(half, init=init, pretrain=pretrain, benchmark=task)
                number = f"{float(theirs['top1']):.1f}{MARK[theirs['selection']]}" if theirs else "–"
                cells.append(f"{_cell(ours)} / {number}")
                rows.append([half, init, pretrain, task, _cell(ours), theirs["top1"] if theirs else ""])
            if any(not c.startswith("–") for c in cells):
                lines.append(f"| {init} | " + " | ".join(cells) + " |")
        text += lines + [""]
    path = _write_csv(out / "paper" / "table1.csv", ["half", "init", "pretrain", "task", "ours", "published"], rows)
    return "\n".join(text), [path]


def main_table(runs: list[dict[str, Any]], out: Path, name: str) -> tuple[str, list[Path]]:
    """Tables 2 and 3: per method and pretrain, every task (mean ± std over seeds) beside the page's number."""
    from .published import published, weights_of

    rows, lines = [], []
    tasks = sorted({r["task"] for r in runs})
    lines += ["| method | pretrain | " + " | ".join(tasks) + " |", "|" + " --- |" * (len(tasks) + 2)]
    for (method, pretrain, backbone), group in sorted(_by(runs, "method", "pretrain", "backbone").items(), key=str):
        numbers = {k: n for k, n in published(method, pretrain, backbone).items()
                   if n.weights == weights_of(pretrain, backbone)}
        cells = []
        for task in tasks:
            ours = _acc([r for r in group if r["task"] == task])
            theirs = numbers.get(task)
            cells.append(f"{_cell(ours)} / {theirs.top1:.2f}{MARK[theirs.selection]}" if theirs else _cell(ours))
            rows.append([method, pretrain, task, _cell(ours), theirs.top1 if theirs else ""])
        lines.append(f"| {method} | {pretrain} | " + " | ".join(cells) + " |")
    path = _write_csv(out / "paper" / f"{name}.csv", ["method", "pretrain", "task", "ours", "published"], rows)
    return "\n".join(lines), [path]


def _curve_figure(runs: list[dict[str, Any]], out: Path, name: str, axis: str, label: str, figure: str | None,
                  setting: Callable[[Any], str] | None = None) -> tuple[str, list[Path]]:
    """Test accuracy against ``axis`` (a config key, or ``params``: the backbone's parameters), SPT vs VPT
    (by method), ours filled with error bars over seeds, the page's points hollow."""
    from .plots import accuracy_curves

    series: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    published: dict[str, dict[float, float]] = defaultdict(dict)
    sizes: dict[str, float] = {}
    for run in runs:
        x = run["parameters"]["backbone"] / 1e6 if axis == "params" else _get(run, axis)
        if x is None or not run.get("test"):
            continue
        series[run["method"]][float(x)].append(100 * run["test"]["acc1"])
        sizes[run.get("backbone", "")] = float(x)
    for row in figure_rows(figure) if figure else []:
        x = sizes.get(row["backbone"]) if axis == "params" else float(row["setting"].split("=", 1)[1])
        if x is not None:
            published[row["method"]][x] = float(row["top1"])
    path, _ = accuracy_curves(series, published, label, out / "paper" / f"{name}.png")
    rows = [[m, x, _cell(v), published[m].get(x, "")] for m, points in series.items() for x, v in sorted(points.items())]
    table = _write_csv(out / "paper" / f"{name}.csv", ["method", label, "ours", "published"], rows)
    lines = [f"| method | {label} | ours | published |", "| --- | --- | --- | --- |"]
    lines += [f"| {m} | {x:g} | {c} | {p} |" for m, x, c, p in rows]
    return "\n".join(lines), [path, table]


def figure1_nmi(runs: list[dict[str, Any]], out: Path) -> tuple[str, list[Path]]:
    """The prompts' NMI with the patch tokens per epoch (mean over layers), SPT vs VPT, one panel per task."""
    import pandas as pd

    from .plots import nmi_curves

    frames = []
    for run in runs:
        path = Path(run["path"]) / "prompt_analysis.csv"
        if path.exists():
            table = pd.read_csv(path)
            if "nmi" in table:
                frames.append(table.groupby("epoch", as_index=False)["nmi"].mean().assign(
                    task=run["task"], method=run["method"], seed=run.get("seed")))
    if not frames:
        return "no run of this experiment has prompt_analysis.csv (callbacks=prompt_analysis)", []
    data = pd.concat(frames, ignore_index=True)
    path, _ = nmi_curves(data, out / "paper" / "figure1_nmi.png")
    first_last = data.sort_values("epoch").groupby(["task", "method"])["nmi"].agg(["first", "last"])
    lines = ["| task | method | NMI at the start | NMI at the end |", "| --- | --- | --- | --- |"]
    lines += [f"| {t} | {m} | {r['first']:.3f} | {r['last']:.3f} |" for (t, m), r in first_last.iterrows()]
    lines.append("\nThe page's Figure 1 prints no values (its curves lie between about 0.1 and 0.4): none is overlaid.")
    return "\n".join(lines), [path]


FIGURES: dict[str, Callable[[list[dict[str, Any]], Path], tuple[str, list[Path]]]] = {
    "table1": table1,
    "table2": lambda runs, out: main_table(runs, out, "table2"),
    "table3": lambda runs, out: main_table(runs, out, "table3"),
    "figure1_nmi": figure1_nmi,
    "figure3_prompt_length": lambda runs, out: _curve_figure(runs, out, "figure3_prompt_length", "prompt.length",
                                                             "prompt length per block", "figure3c"),
    "figure3_model_size": lambda runs, out: _curve_figure(runs, out, "figure3_model_size", "params",
                                                          "backbone parameters (M)", "figure3d"),
    "training_data": lambda runs, out: _curve_figure(runs, out, "training_data", "data.fraction",
                                                     "share of the training split", None),
    "target_data": lambda runs, out: _curve_figure(runs, out, "target_data", "init.data_fraction",
                                                   "share of the training split the prototypes read", None),
    # not the SPT paper's: the few-shot protocol of VIPAMIN and NOAH (experiment=few_shot)
    "few_shot": lambda runs, out: _curve_figure(runs, out, "few_shot", "data.shots", "training images per class",
                                                None),
}


def draw(runs: list[dict[str, Any]], out: Path) -> tuple[str, list[Path]]:
    """Every paper table or figure whose experiment's runs are among ``runs`` (by their ``paper_figure``)."""
    tested = [r for r in runs if r.get("status") == "ok" and r.get("test")]
    text, files = [], []
    for name, group in sorted(_by(tested, "paper_figure").items(), key=str):
        name = name[0]
        if name not in FIGURES:
            continue
        body, written = FIGURES[name](group, out)
        title = "The few-shot curve" if name == "few_shot" else f"The paper's {name.replace('_', ' ')}"
        text += [f"\n### {title} ({len(group)} runs)\n", body]
        files += written
    if text:
        text.append("\n† the published number is its authors' best *test* epoch; ? its selection is not stated.")
    return "\n".join(text), files


# ---- the abstract's claims ---------------------------------------------------------------------------------
def _verdict(holds: bool | None) -> str:
    return {True: "holds", False: "does not hold", None: "not measured"}[holds]


def _frames(runs: list[dict[str, Any]], free: tuple[str, ...] = ()) -> dict[tuple, list[dict[str, Any]]]:
    """Tested runs by frame, less the ``free`` keys (the axis a claim studies: model size, data share)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run.get("status") == "ok" and run.get("test"):
            groups[_frame(run, free)].append(run)
    return groups


FRAME_LABELS = {"recipe.name": "recipe", "data.protocol": "protocol", "pretrain.name": "pretrain",
                "backbone.arch": "backbone", "data.fraction": "data share"}


def _describe(frame: tuple) -> str:
    return ", ".join(f"{FRAME_LABELS[k]} {json.loads(v)}" for k, v in frame if k in FRAME_LABELS)


def _mean_by(runs: list[dict[str, Any]], *keys: str) -> dict[tuple, float]:
    return {k: statistics.mean(_acc(v)) for k, v in _by(runs, *keys).items() if _acc(v)}


def claim_full(runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
    spt, full = _mean_by([r for r in runs if r["method"].startswith("spt_")], "task"), \
        _mean_by([r for r in runs if r["method"] == "full"], "task")
    both = sorted(set(spt) & set(full))
    if not both:
        return None, f"needs SPT and full fine-tuning runs of the same tasks (SPT: {len(spt)} tasks, full: {len(full)})"
    wins = sum(spt[t] > full[t] for t in both)
    return wins >= 0.75 * len(both), f"SPT above full fine-tuning on {wins} of {len(both)} tasks (paper: 19 of 24)"


def claim_parameters(runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
    shares = [100 * r["parameters"]["learnable"] / r["parameters"]["backbone"] for r in runs
              if r["method"].startswith("spt_") and r.get("parameters")]
    if not shares:
        return None, "needs SPT runs"
    return max(shares) < 0.4, f"SPT's learnable parameters, head included: at most {max(shares):.3f} % of the backbone " \
                              f"(paper: < 0.4 % on ViT-B/16)"


def claim_gain(runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
    pretrain = _get(runs[0], "pretrain.name")
    gains = []
    for variant in ("deep", "shallow"):
        spt = _mean_by([r for r in runs if r["method"] == f"spt_{variant}"], "task")
        vpt = _mean_by([r for r in runs if r["method"] == f"vpt_{variant}"], "task")
        gains += [spt[t] - vpt[t] for t in set(spt) & set(vpt)]
    if not gains:
        return None, "needs SPT and VPT runs (same variant) of the same tasks"
    mean = statistics.mean(gains)
    text = f"SPT over VPT: {mean:+.2f} points on average over {len(gains)} task(s) (paper: +10 to +30 on MAE / MoCo v3)"
    return (mean >= 10 if pretrain in SSL else mean > 0), text


def claim_prompt_length(runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
    spread = {}
    for method in ("spt_deep", "vpt_deep"):
        means = _mean_by([r for r in runs if r["method"] == method], "task", "prompt_length")
        lengths = {k[1] for k in means}
        if len(lengths) > 1:
            spread[method] = max(means.values()) - min(means.values())
    if len(spread) < 2:
        return None, "needs SPT-deep and VPT-deep runs at two prompt lengths or more"
    return spread["spt_deep"] < spread["vpt_deep"], (f"accuracy range over prompt lengths: SPT {spread['spt_deep']:.2f}, "
                                                     f"VPT {spread['vpt_deep']:.2f} points (paper: SPT about 80-82, VPT "
                                                     f"54-70 on MAE CUB-200)")


def claim_model_size(runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
    by_size: dict[int, list[float]] = defaultdict(list)  # backbone parameters -> SPT's accuracies
    for run in runs:
        if run["method"].startswith("spt_") and run.get("parameters"):
            by_size[run["parameters"]["backbone"]] += _acc([run])
    if len(by_size) < 2:
        return None, "needs SPT runs on two backbone sizes or more"
    ordered = [statistics.mean(by_size[size]) for size in sorted(by_size)]
    return ordered == sorted(ordered), "SPT's accuracy by backbone size, smallest first: " + ", ".join(
        f"{a:.2f}" for a in ordered) + " (paper: 80.13, 84.33, 87.50 for MAE ViT-B / L / H on CUB-200)"


def claim_nmi(runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
    import pandas as pd

    ends: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        path = Path(run.get("path", "")) / "prompt_analysis.csv"
        if path.exists() and "nmi" in (table := pd.read_csv(path)):
            per_epoch = table.groupby("epoch")["nmi"].mean()
            ends[run["method"]].append((float(per_epoch.iloc[0]), float(per_epoch.iloc[-1])))
    if "spt_deep" not in ends:
        return None, "needs SPT-deep runs with callbacks=prompt_analysis"
    rises = all(last > first for first, last in ends["spt_deep"])
    spt_end = statistics.mean(last for _, last in ends["spt_deep"])
    text = f"SPT's NMI rises in {sum(last > first for first, last in ends['spt_deep'])} of {len(ends['spt_deep'])} run(s)"
    if "vpt_deep" in ends:
        vpt_end = statistics.mean(last for _, last in ends["vpt_deep"])
        return rises and spt_end > vpt_end, f"{text}; at the end SPT {spt_end:.3f}, VPT {vpt_end:.3f}"
    return rises, f"{text} (no VPT run to compare)"


def claim_data(runs: list[dict[str, Any]]) -> tuple[bool | None, str]:
    spt = _mean_by([r for r in runs if r["method"].startswith("spt_") and _get(r, "data.fraction") is not None],
                   "data.fraction")
    if len(spt) < 2:
        return None, "needs SPT runs on two training-split shares or more (experiment=paper/training_data)"
    ordered = [spt[k] for k in sorted(spt)]
    return ordered == sorted(ordered), "SPT by share of the training split: " + ", ".join(
        f"{k[0]:g}: {spt[k]:.2f}" for k in sorted(spt))


# Each claim: its check, and the frame keys it studies (free to differ between the runs it compares).
CLAIMS: dict[str, tuple[Callable[[list[dict[str, Any]]], tuple[bool | None, str]], tuple[str, ...]]] = {
    "SPT surpasses full fine-tuning on most tasks": (claim_full, ()),
    "SPT tunes under 0.4 % of the parameters": (claim_parameters, ()),
    "SPT gains 10-30 points over VPT on self-supervised backbones": (claim_gain, ()),
    "SPT is robust to the prompt length": (claim_prompt_length, ()),
    "SPT scales with model capacity": (claim_model_size, ("backbone.arch",)),
    "SPT scales with training data size": (claim_data, ("data.fraction",)),
    "prompts come to share information with the patch tokens (NMI), SPT above VPT": (claim_nmi, ()),
}


def claims(runs: list[dict[str, Any]]) -> str:
    """The abstract's checkable claims on ``runs``, per frame (recipe, protocol, data share, pretrain,
    backbone): each holds, does not hold, or is not measured (saying which runs are missing)."""
    if not _frames(runs):
        return ""
    lines = ["\n## The paper's claims on these runs\n",
             "Each claim is computed within one frame: runs of the same recipe, protocol, data share, pretrain and "
             "backbone (the axis the claim studies aside); runs of different frames are never mixed.\n",
             "| claim | frame | verdict | on these runs |", "| --- | --- | --- | --- |"]
    for name, (check, free) in CLAIMS.items():
        for frame, group in sorted(_frames(runs, free).items(), key=str):
            holds, text = check(group)
            lines.append(f"| {name} | {_describe(frame)} | {_verdict(holds)} | {text} |")
    frames = _frames(runs)
    if len(frames) > 1:
        lines.append(f"\nThe runs fall into {len(frames)} frames; each claim is stated per frame.")
    return "\n".join(lines)
