"""From the report's runs and settings to the tables each figure draws (plots.py): which runs form a line,
which settings pair, where a study's grid is. Torch-free."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import file_name
from ..settings import INIT_KEYS
from . import plots
from .records import Entry, Setting
from .stats import beside_init, is_spt

LENGTH_KEYS = ("prompt.length",)


def label(key: Setting, shown: list[str], without: tuple[str, ...] = ()) -> str:
    """``method / pretrain / P10`` and the values of the keys that vary between the report's settings."""
    parts = [key.method, key.pretrain] + ([] if "prompt.length" in without or not key.prompt_length
                                          else [f"P{key.prompt_length}"])
    parts += [f"{k.rsplit('.', 1)[-1]}={key.value(k)}" for k in shown if key.has(k) and k not in without]
    return " / ".join(parts)


def run_table(settings: dict[Setting, Entry], shown: list[str]) -> pd.DataFrame:
    """One row per (setting, task, seed) of the report: its accuracy and what identifies its line."""
    rows = []
    for key, e in settings.items():
        for task, seeds in e.seeds.items():
            for (seed, _), acc in zip(seeds.items(), e.tasks[task]):
                rows.append({"key": key, "task": task, "seed": seed, "acc": acc, "length": key.prompt_length,
                             "line": label(key, shown, LENGTH_KEYS), "setting": label(key, shown)})
    return pd.DataFrame(rows)


def prompt_length_figure(table: pd.DataFrame, out: Path) -> list[Path]:
    lengths = table[table["length"].fillna(0) > 0]
    if lengths.empty or lengths.groupby(["task", "line"])["length"].nunique().max() < 2:
        return []  # no line with two prompt lengths
    return [plots.accuracy_vs_prompt_length(lengths, out / "accuracy_vs_prompt_length.png")[0]]


def spt_vpt_pairs(settings: dict[Setting, Entry], shown: list[str]) -> pd.DataFrame:
    """Each SPT setting (by its record: prompt tuning from k-means) with its VPT twin (the same setting but
    for the method's name and a xavier init), per task: both means and the std of the per-seed differences."""
    rows = []
    for key, e in settings.items():
        if not is_spt(key):
            continue
        twin = next((v for k, v in settings.items() if k.init == "xavier" and beside_init(k) == beside_init(key)),
                    None)
        for task in sorted(set(e.per_task) & set(twin.per_task) if twin else ()):
            seeds = set(e.seeds[task]) & set(twin.seeds[task])
            ours, theirs = e.by_seed(task), twin.by_seed(task)
            diffs = pd.Series([ours[s] - theirs[s] for s in seeds])
            rows.append({"task": task, "setting": label(key, shown, INIT_KEYS), "spt": e.per_task[task],
                         "vpt": twin.per_task[task], "std": diffs.std() if len(diffs) > 1 else float("nan")})
    return pd.DataFrame(rows)


def published_rows(settings, shown, published_for) -> pd.DataFrame:
    rows = []
    for key, e in settings.items():
        numbers = published_for(key, e)
        for name, values in {**e.tasks, **{g: [v] for g, v in e.groups.items() if v is not None}}.items():
            if name in numbers:
                rows.append({"setting": label(key, shown), "name": name, "ours": sum(values) / len(values),
                             "std": pd.Series(values).std(), "published": numbers[name].top1})
    return pd.DataFrame(rows)


def parameter_points(settings, shown) -> pd.DataFrame:
    rows = []
    for key, e in settings.items():
        means = pd.Series(e.per_task)
        per_seed = pd.DataFrame({t: pd.Series(e.by_seed(t)) for t in e.tasks})
        rows.append({"setting": label(key, shown), "params": max(e.params["learnable_without_head"], 1),
                     "acc": means.mean(), "std": per_seed.mean(axis=1).std() if len(per_seed) > 1 else 0.0})
    return pd.DataFrame(rows)


def init_points(settings, shown) -> list[pd.DataFrame]:
    """Per setting apart from its prompt init: each init's mean init time and accuracy (two inits or more)."""
    groups: dict[tuple, list[dict]] = {}
    for key, e in settings.items():
        if key.init is None:
            continue
        accs = pd.Series([a for values in e.tasks.values() for a in values])
        groups.setdefault(beside_init(key), []).append(
            {"init": key.init, "time": sum(e.init_s) / len(e.init_s),
             "acc": accs.mean(), "std": accs.std() if len(accs) > 1 else 0.0})
    return [pd.DataFrame(points) for points in groups.values() if len(points) > 1]


def curve_table(runs: list[dict[str, Any]], setting_of, settings, shown) -> pd.DataFrame:
    """Per run and epoch, from its ``csv/metrics.csv``: train loss, val accuracy (%) and the prompts' lr at
    the epoch's last step."""
    frames = []
    for run in runs:
        path = Path(run["path"]) / "csv" / "metrics.csv"
        key = setting_of(run)
        if run.get("status") != "ok" or not path.is_file() or key not in settings:
            continue
        metrics = pd.read_csv(path)
        lr_column = next((c for c in metrics.columns if c.startswith("lr-") and c.endswith("/prompts")),
                         next((c for c in metrics.columns if c.startswith("lr-")), None))
        per_epoch = metrics.dropna(subset=["epoch"]).groupby("epoch").last(skipna=True)
        frame = pd.DataFrame({"epoch": per_epoch.index.astype(int) + 1,
                              "train/loss_epoch": per_epoch.get("train/loss_epoch"),
                              "val/acc1": 100 * per_epoch["val/acc1"] if "val/acc1" in per_epoch else None})
        if lr_column:  # lr rows carry a step only: each takes the epoch of the training row at its step
            epochs = metrics.dropna(subset=["epoch"])[["step", "epoch"]].sort_values("step")
            lrs = pd.merge_asof(metrics.dropna(subset=[lr_column])[["step", lr_column]].sort_values("step"), epochs,
                                on="step", direction="nearest")
            frame["lr"] = (frame["epoch"] - 1).map(lrs.groupby("epoch")[lr_column].last())
        frames.append(frame.assign(task=run["task"], seed=run.get("seed"), setting=label(key, shown)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def grid_figures(dirs: list[Path], out: Path) -> list[Path]:
    """Every ``tune_final.json`` under ``dirs``: its grid against the lr."""
    written = []
    for path in sorted(p for d in dirs for p in Path(d).rglob("tune_final.json")):
        summary = json.loads(path.read_text())
        rows = []
        for point in summary["grid"]:
            values = dict(o.split("=", 1) for o in point["overrides"])
            lr = values.pop("model.optimizer.lr", None)
            if lr is None or point["val_acc1_last"] is None:
                continue
            rows.append({"lr": float(lr), "other": " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items()),
                         "val": 100 * point["val_acc1_last"], "chosen": point["overrides"] == summary["chosen"]})
        grid = pd.DataFrame(rows)
        if grid.empty or not grid["chosen"].any():
            continue
        chosen = grid[grid["chosen"]].iloc[0]
        task = path.parent.name
        written.append(plots.tuning_grid(grid, {"lr": chosen["lr"], "val": chosen["val"]}, summary.get("edge", []),
                                         task, out / "grids" / f"{file_name(task)}.png")[0])
    return written


def draw_all(runs, settings, dirs, out: Path, setting_of, shown, published_for) -> list[Path]:
    """Every figure the runs allow, into ``out``."""
    written = []
    table = run_table(settings, shown)
    if not table.empty:
        written += prompt_length_figure(table, out)
    pairs = spt_vpt_pairs(settings, shown)
    if not pairs.empty:
        written.append(plots.gain_over_vpt(pairs, out / "spt_gain_over_vpt.png")[0])
    beside = published_rows(settings, shown, published_for)
    if not beside.empty:
        written.append(plots.against_published(beside, out / "ours_vs_published.png")[0])
    if len(settings) > 1:
        written.append(plots.accuracy_vs_parameters(parameter_points(settings, shown),
                                                    out / "accuracy_vs_parameters.png")[0])
    for i, points in enumerate(init_points(settings, shown)):
        written.append(plots.init_time_vs_accuracy(points, out / f"init_time_vs_accuracy{'' if not i else i}.png")[0])
    curves = curve_table(runs, setting_of, settings, shown)
    for task, part in (curves.groupby("task") if not curves.empty else ()):
        written.append(plots.training_curves(part, task, out / "curves" / f"{file_name(task)}.png")[0])
    return written + grid_figures(dirs, out)
