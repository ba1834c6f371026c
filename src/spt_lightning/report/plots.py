"""The report's figures, each answering one of the paper's questions. Torch-free (matplotlib, pandas).

Every function takes plain tables (a pandas DataFrame or dicts of numbers), draws one PNG with a title,
units and readable ticks, and returns ``(path, shown)``: ``shown`` is exactly what was drawn (the points,
their error bars, the pairing), so a test can check a figure's content, not only that a file exists.
A line or a bar group is one setting: settings are never mixed in one line; error bars are the standard
deviation over seeds where there are several.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator, ScalarFormatter  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _plain_log_axis(ax, values) -> None:
    """A log x-axis with the values themselves as ticks (10, 50, 100), not 2x10^0 labels."""
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(values)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def _std(values: pd.Series) -> float:
    return float(values.std()) if len(values) > 1 else 0.0


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def accuracy_vs_prompt_length(runs: pd.DataFrame, path: Path) -> tuple[Path, dict]:
    """Test accuracy against P, one panel per task, one line per setting (``runs``: task, line, length, seed,
    acc). Error bars: std over seeds."""
    tasks = list(dict.fromkeys(runs["task"]))
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    shown: dict[str, dict[str, list]] = {}
    for ax, task in zip(axes.flat, tasks):
        for line, group in runs[runs["task"] == task].groupby("line", sort=True):
            stats = group.groupby("length")["acc"].agg(["mean", _std, "count"]).sort_index()
            ax.errorbar(stats.index, stats["mean"], yerr=stats["_std"], marker="o", capsize=3, label=line)
            shown.setdefault(task, {})[line] = list(zip(stats.index, stats["mean"], stats["_std"], stats["count"]))
        _plain_log_axis(ax, runs[runs["task"] == task]["length"])
        ax.set(title=task, xlabel="prompt length P (log scale)", ylabel="top-1 test accuracy (%)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle("Accuracy against prompt length (mean ± std over seeds)")
    return _save(fig, path), shown


def gain_over_vpt(pairs: pd.DataFrame, path: Path) -> tuple[Path, dict]:
    """SPT − VPT per task (``pairs``: task, setting, spt, vpt: mean test accuracies, and ``std``: std over
    seeds of the per-seed differences, NaN without paired seeds)."""
    labels = [f"{t}\n{s}" for t, s in zip(pairs["task"], pairs["setting"])]
    gains = (pairs["spt"] - pairs["vpt"]).tolist()
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(gains) + 2), 4.2))
    ax.bar(range(len(gains)), gains, yerr=pairs["std"].fillna(0).tolist(), capsize=3,
           color=["tab:green" if g >= 0 else "tab:red" for g in gains])
    ax.set_xticks(range(len(gains)), labels, rotation=45, ha="right", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set(ylabel="SPT − VPT, top-1 test accuracy (points)", title="SPT's gain over VPT (same setting otherwise)")
    return _save(fig, path), dict(zip(zip(pairs["task"], pairs["setting"]), gains))


def against_published(rows: pd.DataFrame, path: Path) -> tuple[Path, dict]:
    """Ours (mean ± std over seeds) beside the published number per task or group (``rows``: setting, name,
    ours, std, published)."""
    settings = list(dict.fromkeys(rows["setting"]))
    fig, axes = plt.subplots(len(settings), 1, figsize=(max(6, 0.6 * rows.groupby("setting").size().max() + 2),
                                                        3.6 * len(settings)), squeeze=False)
    shown = {}
    for ax, setting in zip(axes.flat, settings):
        part = rows[rows["setting"] == setting]
        x = range(len(part))
        ax.bar([i - 0.2 for i in x], part["ours"], width=0.4, yerr=part["std"].fillna(0), capsize=3, label="ours")
        ax.bar([i + 0.2 for i in x], part["published"], width=0.4, label="published")
        ax.set_xticks(list(x), part["name"], rotation=45, ha="right", fontsize=7)
        ax.set(ylabel="top-1 test accuracy (%)", title=setting)
        ax.legend(fontsize=7)
        shown[setting] = list(zip(part["name"], part["ours"], part["published"]))
    return _save(fig, path), shown


def tuning_grid(grid: pd.DataFrame, chosen: dict[str, Any], edge: list[str], task: str, path: Path) -> tuple[Path, dict]:
    """A task's grid: last-epoch val accuracy against the lr, one line per value of the other keys; the
    chosen point starred, a choice on the grid's edge named in the title (``grid``: lr, other, val)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    shown = {}
    for other, group in grid.groupby("other", sort=True):
        group = group.sort_values("lr")
        ax.plot(group["lr"], group["val"], marker="o", label=other or "lr only")
        shown[other] = list(zip(group["lr"], group["val"]))
    ax.scatter([chosen["lr"]], [chosen["val"]], marker="*", s=250, color="gold", edgecolor="black", zorder=3,
               label="chosen")
    _plain_log_axis(ax, grid["lr"])
    ax.tick_params(axis="x", labelrotation=30)
    ax.set(xlabel="learning rate (log scale)", ylabel="val top-1 accuracy at the last epoch (%)",
           title=f"{task}: tuning grid" + ("\n(optimum on the grid's edge: it may lie beyond)" if edge else ""))
    ax.legend(fontsize=7)
    return _save(fig, path), {"lines": shown, "chosen": (chosen["lr"], chosen["val"]), "edge": bool(edge)}


def accuracy_vs_parameters(points: pd.DataFrame, path: Path) -> tuple[Path, dict]:
    """Mean test accuracy over a setting's tasks against its learnable parameters (head excluded), one
    point per setting (``points``: setting, params, acc, std)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for row in points.itertuples():
        ax.errorbar([row.params], [row.acc], yerr=[row.std], marker="o", capsize=3, label=row.setting)
    ax.set_xscale("log")
    ax.set(xlabel="learnable parameters without the head (log scale)", ylabel="mean top-1 test accuracy (%)",
           title="Accuracy against learnable parameters")
    ax.legend(fontsize=7)
    return _save(fig, path), {r.setting: (r.params, r.acc) for r in points.itertuples()}


def init_time_vs_accuracy(points: pd.DataFrame, path: Path) -> tuple[Path, dict]:
    """Per prompt init of one setting: its init time against its mean test accuracy (``points``: init, time,
    acc, std)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for row in points.itertuples():
        ax.errorbar([row.time], [row.acc], yerr=[row.std], marker="o", capsize=3)
        ax.annotate(row.init, (row.time, row.acc), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.margins(x=0.2, y=0.15)
    ax.set(xlabel="prompt init time (s)", ylabel="mean top-1 test accuracy (%)",
           title="Prompt inits: cost against accuracy (mean ± std over seeds)")
    return _save(fig, path), {r.init: (r.time, r.acc) for r in points.itertuples()}


def training_curves(curves: pd.DataFrame, task: str, path: Path) -> tuple[Path, dict]:
    """Per epoch: train loss, val accuracy and prompt lr, one line per setting, mean ± std over seeds
    (``curves``: setting, seed, epoch and the three measures)."""
    measures = {"train/loss_epoch": "train loss", "val/acc1": "val top-1 accuracy (%)", "lr": "learning rate (prompts)"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    shown: dict[str, dict] = {}
    for ax, (column, label) in zip(axes, measures.items()):
        for setting, group in curves.groupby("setting", sort=True):
            stats = group.dropna(subset=[column]).groupby("epoch")[column].agg(["mean", _std]).sort_index()
            if stats.empty:
                continue
            ax.plot(stats.index, stats["mean"], marker=".", label=setting)
            ax.fill_between(stats.index, stats["mean"] - stats["_std"], stats["mean"] + stats["_std"], alpha=0.2)
            shown.setdefault(setting, {})[column] = list(zip(stats.index, stats["mean"]))
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{task}: training curves (mean ± std over seeds)")
    return _save(fig, path), shown


def analysis_heatmap(rows: pd.DataFrame, title: str, path: Path) -> tuple[Path, dict]:
    """Prompt-token dependence per layer (rows) and epoch (columns), epoch 0 right after the init."""
    table = rows.pivot(index="layer", columns="epoch", values="dependence").sort_index()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.45 * table.shape[1] + 2.5), max(3, 0.32 * table.shape[0] + 1.6)))
    image = ax.imshow(table.to_numpy(), aspect="auto", origin="lower", vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(table.shape[1]), [str(e) for e in table.columns])
    ax.set_yticks(range(table.shape[0]), [str(i) for i in table.index])
    fig.colorbar(image, ax=ax, label="prompt-token dependence (0 none, 1 monotone)")
    ax.set(xlabel="epoch (0: after init)", ylabel="prompted layer", title=title)
    ax.title.set_fontsize(8)
    return _save(fig, path), {"layers": list(table.index), "epochs": list(table.columns)}


def accuracy_curves(series: dict[str, dict[float, list[float]]], published: dict[str, dict[float, float]],
                    xlabel: str, path: Path) -> tuple[Path, dict]:
    """Test accuracy against one axis, a line per method: ours filled with error bars (std over seeds), the
    published points hollow in the same colour (a paper figure redrawn beside the user's runs)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    shown: dict[str, list] = {}
    for i, method in enumerate(sorted(set(series) | set(published))):
        colour = f"C{i}"
        points = sorted(series.get(method, {}).items())
        if points:
            xs = [x for x, _ in points]
            means = [sum(v) / len(v) for _, v in points]
            stds = [_std(pd.Series(v)) for _, v in points]
            ax.errorbar(xs, means, yerr=stds, marker="o", color=colour, capsize=3, label=f"{method} (ours)")
            shown[method] = list(zip(xs, means, stds))
        theirs = sorted(published.get(method, {}).items())
        if theirs:
            ax.plot([x for x, _ in theirs], [y for _, y in theirs], linestyle="--", marker="o", color=colour,
                    markerfacecolor="none", label=f"{method} (published)")
    ax.set(xlabel=xlabel, ylabel="top-1 test accuracy (%)")
    ax.legend(fontsize=7)
    return _save(fig, path), shown


def nmi_curves(data: pd.DataFrame, path: Path) -> tuple[Path, dict]:
    """NMI between prompts and patch tokens (mean over layers) per epoch, one panel per task, a line per method
    (``data``: task, method, seed, epoch, nmi; mean ± std over seeds), as the paper's Figure 1 draws it."""
    tasks = list(dict.fromkeys(data["task"]))
    rows, cols = _grid(len(tasks))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    shown: dict[str, dict] = {}
    for ax, task in zip(axes.flat, tasks):
        for method, group in data[data["task"] == task].groupby("method", sort=True):
            stats = group.groupby("epoch")["nmi"].agg(["mean", _std]).sort_index()
            ax.plot(stats.index, stats["mean"], label=method)
            ax.fill_between(stats.index, stats["mean"] - stats["_std"], stats["mean"] + stats["_std"], alpha=0.2)
            shown.setdefault(task, {})[method] = list(zip(stats.index, stats["mean"]))
        ax.set(title=task, xlabel="epoch (0: after init)", ylabel="NMI (prompts, patch tokens)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    return _save(fig, path), shown
