"""The papers' protocol as one command: a grid on ``protocol=tune`` (val), the best retrained on
``final`` with several seeds, each tested once at its last epoch.

    python -m spt_lightning.tune task=vtab/dtd method=spt_deep                  # the recipe's grid, 3 seeds
    python -m spt_lightning.tune experiment=vtab_all pretrain=mae --seeds 5     # every task of the experiment
    python -m spt_lightning.tune task=fgvc/cub optim.optimizer.lr=1e-3,5e-3     # a grid of your own

The grid is the recipe's (``recipe.grid``) unless the command sweeps keys itself (``a,b``, ``range()``,
``choice()``: Hydra's syntax). Each grid run trains on train800 (FGVC: train) and is scored on val200
(val) only; per task, the point with the best validation accuracy is retrained on train800val200
(train + val) with each seed and tested once. Tasks come from ``task=a,b`` or the experiment's sweep.
Everything lands in a folder named by the command (``<log_dir>/tune/...``), so the same command run
again reuses every finished run and continues the others. ``tune_final.json`` per task records the grid,
the choice and the test accuracies; the last lines print the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, open_dict

from .config import check_overrides
from .errors import SptError
from .files import write_atomically
from .runs import read_results


def grid(overrides: list[str]) -> tuple[list[str], list[list[str]]]:
    """Split overrides into fixed ones and the grid points (one list of ``key=value`` per point).

    Sweeps are Hydra's: ``a,b``, ``range(1,4)``, ``choice(...)``, ``glob(...)``.
    """
    fixed, axes = [], []
    for item, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if parsed.is_sweep_override():
            key = parsed.get_key_element()
            axes.append([f"{key}={value}" for value in parsed.sweep_string_iterator()])
        else:
            fixed.append(item)
    return fixed, [list(p) for p in itertools.product(*axes)] if axes else [[]]


def _compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    with initialize_config_module(version_base="1.3", config_module="spt_lightning.conf"):
        return compose("train", overrides=overrides, return_hydra_config=hydra)


def _tasks(fixed: list[str], points: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The tasks to tune one by one (a ``task`` axis, else the experiment's task sweep, else the one task)."""
    tasks = list(dict.fromkeys(o for p in points for o in p if o.startswith("task=")))
    if tasks:
        points = [list(p) for p in dict.fromkeys(tuple(o for o in p if not o.startswith("task=")) for p in points)]
        return tasks, points
    swept = (_compose(fixed, hydra=True).hydra.sweeper.get("params") or {}).get("task")
    if swept:
        return [f"task={t.strip()}" for t in str(swept).split(",")], points
    return [], points


def _recipe_points(cfg: DictConfig) -> list[list[str]]:
    axes = [[f"{key}={value}" for value in values] for key, values in (cfg.recipe.get("grid") or {}).items()]
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]


def _run(overrides: list[str], output_dir: Path, reuse: bool) -> dict[str, Any]:
    """The run's results: read back when it finished before (``reuse``), else trained (or continued)."""
    from .results import record_outcome
    from .train import train

    if reuse and (output_dir / "results.json").exists():
        done = read_results(output_dir / "results.json")
        if done["status"] == "ok":
            return done
    cfg = _compose(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    try:
        return train(cfg)
    except BaseException as err:  # a failed run is recorded and the protocol goes on; an interruption stops it
        record_outcome(cfg, err)
        if not isinstance(err, Exception):
            raise
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}


def _slug(overrides: list[str]) -> str:
    return re.sub(r"[^\w.=,+-]+", "_", ",".join(o for o in overrides if not o.startswith("hydra.")))[:150] or "defaults"


def tune_task(fixed: list[str], points: list[list[str]] | None, root: Path, seeds: int) -> dict[str, Any]:
    """Grid on val, then the best point retrained on train + val with ``seeds`` seeds, each tested once."""
    reuse = "overwrite=true" not in fixed
    points = points or _recipe_points(_compose(fixed))
    for point in points:  # a mistyped key or option is refused before any run
        check_overrides([*fixed, *point])
    scored = []
    for i, point in enumerate(points):
        result = _run([*fixed, *point, "data.protocol=tune"], root / "grid" / str(i), reuse)
        val = result.get("selection", {}).get("val_acc1") if result.get("status") == "ok" else None
        scored.append({"overrides": point, "val_acc1": val, "status": result.get("status")})
        print(f"[{i + 1}/{len(points)}] {' '.join(point) or '(defaults)'}: val acc1 "
              f"{'failed' if val is None else f'{100 * val:.2f}%'}", flush=True)
    ok = [s for s in scored if s["val_acc1"] is not None]
    if not ok:
        raise TuneError(f"every grid run failed; see {root / 'grid'}")
    best = max(ok, key=lambda s: s["val_acc1"])
    finals = [_run([*fixed, *best["overrides"], "data.protocol=final", f"seed={seed}"], root / "final" / f"seed{seed}",
                   reuse) for seed in range(seeds)]
    tests = [f["test"]["acc1"] for f in finals if f.get("status") == "ok" and f.get("test")]
    summary = {"fixed": fixed, "grid": scored, "chosen": best["overrides"], "chosen_val_acc1": best["val_acc1"],
               "final_test_acc1": tests, "final_failed": seeds - len(tests),
               "final_dirs": [str(root / "final" / f"seed{s}") for s in range(seeds)]}
    write_atomically(root / "tune_final.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    return summary


class TuneError(SptError):
    """The protocol cannot go on (every grid run failed)."""


def tune_final(overrides: list[str], root: Path | None = None, seeds: int = 3) -> dict[str, dict[str, Any]]:
    """Tune → final for each task; returns ``{task: summary}`` and prints the table."""
    fixed, points = grid(overrides)
    tasks, points = _tasks(fixed, points)
    points = None if points == [[]] else points
    fixed = [o for o in fixed if not (tasks and o.startswith("task="))]
    root = root or Path(_compose(fixed).paths.log_dir) / "tune" / _slug(fixed)
    summaries = {}
    for task in tasks or [None]:
        where = root / task.split("=", 1)[1].replace("/", "_") if task else root
        name = task.split("=", 1)[1] if task else _compose(fixed).task.name
        summaries[name] = tune_task([*fixed, *([task] if task else [])], points, where, seeds)
    print(table(summaries, seeds))
    return summaries


def table(summaries: dict[str, dict[str, Any]], seeds: int) -> str:
    lines = [f"| task | chosen on val | val acc. (%) | test acc. (%, {seeds} seeds, last epoch) |", "| --- | --- | --- | --- |"]
    means = []
    for task, s in summaries.items():
        tests = [100 * t for t in s["final_test_acc1"]]
        cell = "failed" if not tests else f"{statistics.mean(tests):.2f}" + (
            f" ± {statistics.stdev(tests):.2f}" if len(tests) > 1 else "")
        if s["final_failed"] and tests:
            cell += f" ({s['final_failed']} failed)"
        if tests:
            means.append(statistics.mean(tests))
        lines.append(f"| {task} | {' '.join(s['chosen']) or '(defaults)'} | {100 * s['chosen_val_acc1']:.2f} | {cell} |")
    if len(summaries) > 1 and means:
        lines.append(f"| mean of {len(means)} tasks | | | {statistics.mean(means):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spt_lightning.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="final runs per task (seeds 0..N-1; VPT used 5)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: <log_dir>/tune/<the command>)")
    args, overrides = parser.parse_known_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    try:
        tune_final(overrides, args.out, args.seeds)
    except SptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
