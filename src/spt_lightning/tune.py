"""The papers' protocol as one command, on any Hydra launcher: a grid on ``protocol=tune`` (val), per task
the best point retrained on ``final`` with several seeds, each tested once at its last epoch, then the table.

    python -m spt_lightning.tune task=vtab/dtd method=spt_deep                   # the recipe's grid, 3 seeds
    python -m spt_lightning.tune experiment=paper/vtab pretrain=mae --seeds 5    # every task of the experiment
    python -m spt_lightning.tune task=fgvc/cub model.optimizer.lr=1e-3,5e-3      # a grid of your own
    python -m spt_lightning.tune experiment=paper/vtab hydra/launcher=joblib hydra.launcher.n_jobs=2
    python -m spt_lightning.tune experiment=paper/vtab hydra/launcher=submitit_slurm \\
        hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 hydra.launcher.timeout_min=600

The grid is the recipe's (``recipe.grid``) unless the command sweeps keys itself (``a,b``, ``range()``,
``choice()``: Hydra's syntax). Tasks come from ``task=a,b`` or the experiment's sweep.

Two phases, each one batch of Hydra's launcher (``hydra/launcher=...``; sequential by default): every
task's grid runs (trained on train800 / FGVC train, scored on val200 / val), then every task's final runs
(the chosen point on train800val200 / train + val, one per seed, tested once). A grid point is scored as
the final run is tested: at its **last** epoch (VPT's and VIPAMIN's scripts score the last epoch too);
ties are broken by the best epoch's val accuracy, then by grid order, and are printed.

A run is known by its settings (``settings.py``: the resolved config less paths, loggers and the like):
its folder is ``<study>/<task>/<grid|final>/<label>-<digest of its settings>``, and a finished run there is
reused only when its stored settings equal the requested ones. The same command again, after a crash or
a preemption, runs only what is missing; a changed grid, recipe or choice runs what is new.
``<study>/<task>/tune_final.json`` records the grid, the scores, the choice and the final runs;
``<study>/hyperparameters.csv`` every task's choice, which ``--chosen`` reads back to run only the final
runs (the same command, another machine or more seeds):

    python -m spt_lightning.tune experiment=paper/vtab pretrain=mae method=spt_deep --chosen hyperparameters.csv

``--pack K`` trains up to K grid points of a task in one job on one pass of the frozen backbone (batch
K x B; ``packing`` says which points may, ``packed_train`` how): each point still gets its own folder,
selection, checkpoint and ``results.json``, equal to its own run's within fp32 rounding. It fills a GPU
that one batch of 32 leaves idle; on a CPU it gains nothing (benchmarks/packed_grid.py).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import json
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from .config import check_launcher, check_overrides, compose_train, renamed
from .errors import SptError
from .files import home_relative, write_atomically
from .launch import hydra_launcher, launcher_overrides
from .packing import pack_name, packs, write_pack
from .results import RESULTS, read_results
from .runs import latest_checkpoint
from .settings import differences, digest
from .trust import check_plain_choice


class TuneError(SptError):
    """The study cannot go on (every grid run of a task failed, a folder holds a run of other settings)."""


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


def _tasks(fixed: list[str], points: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The tasks to tune (a ``task`` axis, else the experiment's task sweep, else the one task)."""
    tasks = list(dict.fromkeys(o for p in points for o in p if o.startswith("task=")))
    if tasks:
        points = [list(p) for p in dict.fromkeys(tuple(o for o in p if not o.startswith("task=")) for p in points)]
        return tasks, points
    swept = (compose_train(fixed, hydra=True).hydra.sweeper.get("params") or {}).get("task")
    if swept and not any(o.startswith("task=") for o in fixed):  # the command line's task wins over the sweep
        return [f"task={t.strip()}" for t in str(swept).split(",")], points
    return [], points


def _recipe_points(cfg: DictConfig) -> list[list[str]]:
    """The recipe's grid: the product of its axes. An axis is ``key: [values]``, or ``name: [mappings]`` whose
    keys vary jointly (VIPAMIN's (K, lambda) pairs)."""
    axes = [[[f"{k}={v}" for k, v in value.items()] if isinstance(value, DictConfig) else [f"{key}={value}"]
             for value in values] for key, values in (cfg.recipe.get("grid") or {}).items()]
    return [[o for part in p for o in part] for p in itertools.product(*axes)] if axes else [[]]


def _check_init_keys(cfg: DictConfig, points: list[list[str]]) -> None:
    """A grid over an init's own keys (VIPAMIN's K and lambda) trains the same model at every value unless
    the run's init reads them (its record's ``settings``)."""
    from .prototypes.strategies import STRATEGIES, find

    init = find(cfg.prompt.init)
    if init is None:
        return  # named by the run's own check
    own = {f"init.{key}": name for name, strategy in STRATEGIES.items() for key in strategy.settings}
    swept = sorted({o.split("=", 1)[0] for p in points for o in p if o.split("=", 1)[0] in own})
    unread = [key for key in swept if key[len("init."):] not in init.settings]
    if unread:
        raise TuneError(f"the grid varies {', '.join(unread)}, which prompt.init={cfg.prompt.init} does not read; "
                        f"add prompt.init={own[unread[0]]} (or use another recipe)")


def _slug(text: str, length: int) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_")[:length] or "defaults"


def _label(point: list[str]) -> str:
    """``model.optimizer.lr=0.001 model.optimizer.weight_decay=0.01`` → ``lr0.001_weight_decay0.01``."""
    return "_".join(f"{key.rsplit('.', 1)[-1]}{value}" for key, value in (o.split("=", 1) for o in point))


@dataclass
class Job:
    """One run of the study: its overrides, its resolved config and the folder its settings name."""

    overrides: list[str]
    config: dict[str, Any]
    folder: Path
    subdir: str
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> list[str]:
        return [*self.overrides, f"hydra.sweep.subdir={self.subdir}"]


def plan(overrides: list[str], root: Path, where: str, label: str) -> Job:
    """The job of ``overrides``: its folder is ``root/where/<label>-<digest of its settings>``."""
    cfg = compose_train(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "<run>"  # resolved without Hydra's runtime; a placeholder in the settings
    config = OmegaConf.to_container(cfg, resolve=True)
    subdir = f"{where}/{_slug(label, 48)}-{digest(config)}"
    return Job(overrides, config, root / subdir, subdir)


def finished(job: Job, overwrite: bool) -> dict[str, Any] | None:
    """The job's results when a finished run of exactly its settings is in its folder; a finished run of
    other settings there is refused."""
    path = job.folder / RESULTS
    if overwrite or not path.is_file():
        return None
    done = read_results(path)
    if done["status"] != "ok":
        return None  # failed or interrupted: run again (resume=auto continues from its last checkpoint)
    if digest(done["config"]) != digest(job.config):
        raise TuneError(f"{job.folder} holds a finished run of other settings "
                        f"({'; '.join(differences(done['config'], job.config))}); nothing was run. "
                        f"Move that folder away, or give this study a folder of its own (--out).")
    return done


def run_phase(launch, jobs: list[Job], overwrite: bool, phase: str, pack: int = 1) -> None:
    """Reuse every finished run, launch the others as one batch (grid points in packs of up to ``pack``
    where they may share a pass, see ``packing``), and read every job's results."""
    for job in jobs:
        job.result = finished(job, overwrite) or {}
    todo = [job for job in jobs if not job.result]
    # a point with a run of its own to continue (checkpoints/last.ckpt) continues it unpacked
    groups, reasons = packs([None if latest_checkpoint(j.folder) else j.config for j in todo], pack)
    packed = [[todo[i] for i in g] for g in groups if len(g) > 1]
    alone = [todo[g[0]] for g in groups if len(g) == 1]
    print(f"{phase}: {len(jobs)} run(s), {len(jobs) - len(todo)} finished before and reused, {len(todo)} to run"
          + (f", {len(todo) - len(alone)} of them in {len(packed)} pack(s)" if packed else ""), flush=True)
    if reasons:
        print(f"{phase}: not packed: " + "; ".join(f"{n} run(s): {r}" for r, n in reasons.items()), flush=True)
    for jobs_of, packed_ in (([job.command for job in alone], False),
                             ([pack_job(members).command for members in packed], True)):
        try:
            launch(jobs_of, packed=packed_)
        except Exception as err:  # noqa: BLE001 - a launcher's job failed (killed, out of time): the rest stand
            print(f"{phase}: a job ended without finishing ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                  f"its folder keeps what it wrote: the same command continues it", flush=True)
    for job in todo:
        path = job.folder / RESULTS
        job.result = read_results(path) if path.is_file() else {"status": "missing", "error": "no results.json"}


def pack_job(members: list[Job]) -> Job:
    """The job of a pack: its first point's overrides, in a folder of its own beside the points' that
    holds ``pack.json`` (the points) and what resumes it."""
    first = members[0]
    name = pack_name([m.folder for m in members])
    subdir = str(Path(first.subdir).parent / name)
    folder = first.folder.parent / name
    write_pack(folder, [{"label": m.folder.name, "folder": str(m.folder), "config": m.config} for m in members])
    return Job(first.overrides, first.config, folder, subdir)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def choose(points: list[list[str]], jobs: list[Job]) -> dict[str, Any]:
    """The point with the best last-epoch val accuracy; ties, and a choice on the grid's edge, noted."""
    scored = [{"overrides": p, "val_acc1_last": j.result.get("selection", {}).get("last_val_acc1"),
               "val_acc1_best_epoch": j.result.get("selection", {}).get(
                   "best_val_acc1", j.result.get("selection", {}).get("val_acc1")),
               "status": j.result.get("status"), "folder": str(j.folder)} for p, j in zip(points, jobs)]
    ok = [s for s in scored if s["status"] == "ok" and s["val_acc1_last"] is not None]
    if not ok:
        raise TuneError(f"every grid run failed; see {Path(jobs[0].folder).parent}")
    top = max(s["val_acc1_last"] for s in ok)
    ties = [s for s in ok if s["val_acc1_last"] == top]
    best = max(ties, key=lambda s: s["val_acc1_best_epoch"] or 0.0)  # max keeps the first in grid order
    edge = []
    for i, chosen in enumerate(best["overrides"]):
        key, value = chosen.split("=", 1)
        values = [_number(p[i].split("=", 1)[1]) for p in points]
        if None not in values and len(set(values)) > 2 and _number(value) in (min(values), max(values)):
            edge.append(f"{chosen} is the {'smallest' if _number(value) == min(values) else 'largest'} value of "
                        f"{key} in the grid: the optimum may lie beyond it")
    return {"grid": scored, "chosen": best["overrides"], "chosen_val_acc1_last": top,
            "ties": [s["overrides"] for s in ties] if len(ties) > 1 else [], "edge": edge,
            "rule": "best val accuracy at the last epoch; ties: best-epoch val accuracy, then grid order"}


def study_folder(fixed: list[str]) -> Path:
    """``<log_dir>/tune/<the command, cut>-<hash of the whole command>``."""
    text = ",".join(fixed)
    return (Path(compose_train(fixed).paths.log_dir) / "tune" /
            f"{_slug(text, 80)}-{hashlib.sha256(text.encode()).hexdigest()[:8]}")


HYPERPARAMETERS = "hyperparameters.csv"


def write_choices(path: Path, choices: dict[str, dict[str, Any]]) -> None:
    """Each task's chosen values as a CSV (``task``, one column per tuned key, the val score): what
    ``--chosen`` reads back to run the final runs only."""
    keys = list(dict.fromkeys(o.split("=", 1)[0] for c in choices.values() for o in c["chosen"]))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["task", *keys, "val_acc1_last"])
            for task, c in choices.items():
                values = dict(o.split("=", 1) for o in c["chosen"])
                w.writerow([task, *(values.get(k, "") for k in keys), c.get("chosen_val_acc1_last", "")])

    write_atomically(path, write)


def read_choices(path: Path) -> dict[str, dict[str, Any]]:
    """``{task: {"chosen": [key=value...], ...}}`` from a CSV written by :func:`write_choices`."""
    if not path.is_file():
        raise TuneError(f"--chosen {path}: no such file (a study writes {HYPERPARAMETERS} into its folder)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "task" not in rows[0]:
        raise TuneError(f"--chosen {path}: expected a CSV with a 'task' column and one column per tuned key")
    out = {}
    for row in rows:
        chosen = [f"{k}={v}" for k, v in row.items() if k not in ("task", "val_acc1_last") and v != ""]
        score = row.get("val_acc1_last")
        out[row["task"]] = {"grid": [], "chosen": chosen, "chosen_val_acc1_last": float(score) if score else None,
                            "ties": [], "edge": [], "rule": f"read from {path}"}
    return out


def _outer(fixed: list[str]) -> list[list[str]]:
    """The experiment's sweep axes besides its tasks and seeds (``method: spt_shallow,spt_deep``): each
    combination is a study of its own. An axis the command line sets is the command line's."""
    params = compose_train(fixed, hydra=True).hydra.sweeper.get("params") or {}
    given = {o.split("=", 1)[0].lstrip("+~") for o in fixed}
    axes = []
    for key, value in params.items():
        if key in ("task", "seed") or key in given:
            continue
        parsed = OverridesParser.create().parse_override(f"{key}={value}")
        values = parsed.sweep_string_iterator() if parsed.is_sweep_override() else [parsed.get_value_element_as_str()]
        axes.append([f"{key}={v}" for v in values])
    return [list(p) for p in itertools.product(*axes)] if axes else []


def tune_final(overrides: list[str], root: Path | None = None, seeds: int = 3,
               chosen: Path | None = None, pack: int = 1, dry_run: bool = False,
               gpu_check: Path | None = None) -> dict[str, dict[str, Any]]:
    """Grid → choice on val → final seeds for each task, through Hydra's launcher; returns
    ``{task: summary}`` and prints the table. ``chosen``: a ``hyperparameters.csv`` of an earlier study,
    whose per-task choices are used instead of a grid (the final runs only). ``pack``: grid points trained
    together per pass (``packing``; the final runs differ in seed, so each runs alone). ``dry_run``: print the
    jobs, their resources and the GPU-hours (``budget``, from ``gpu_check``'s measured step) and start none.
    An experiment that sweeps more than its tasks (``experiment=paper/table2_mae``: two methods) is one study
    per combination, in a sub-folder each (``<study>/method_spt_deep/...``)."""
    hydra_args, overrides = launcher_overrides(overrides)
    check_launcher(hydra_args)  # a missing plugin or an option it does not know: one line, before anything
    fixed, points = grid(overrides)
    check_overrides(fixed)
    root = Path(root or study_folder(fixed)).absolute()
    combos = _outer(fixed)
    if not combos:
        return _study(hydra_args, fixed, points, root, seeds, chosen, pack, dry_run, gpu_check)
    summaries = {}
    for combo in combos:
        print(f"== {' '.join(combo)}", flush=True)
        found = _study(hydra_args, [*fixed, *combo], points, root / _slug("_".join(combo), 80), seeds, chosen,
                       pack, dry_run, gpu_check)
        summaries |= {f"{task} ({' '.join(combo)})": s for task, s in found.items()}
    return summaries


def _study(hydra_args: list[str], fixed: list[str], points: list[list[str]], root: Path, seeds: int,
           chosen: Path | None, pack: int, dry_run: bool, gpu_check: Path | None) -> dict[str, dict[str, Any]]:
    """One study: every task of ``fixed``'s grid on val, then its choice's final runs (see :func:`tune_final`)."""
    check_overrides(fixed)
    tasks, points = _tasks(fixed, points)
    tasks = tasks or [f"task={compose_train(fixed).task.name}"]
    fixed = [o for o in fixed if not o.startswith("task=")]
    overwrite = "overwrite=true" in fixed
    names = {task: task.split("=", 1)[1] for task in tasks}
    read = read_choices(chosen) if chosen else {}
    missing = [names[t] for t in tasks if chosen and names[t] not in read]
    if missing:
        raise TuneError(f"--chosen {chosen} has no row for {', '.join(missing)}; nothing was run")
    grids = {}
    for task in tasks:  # every task and grid point is checked before any run
        check_overrides([*fixed, task])
        cfg = compose_train([*fixed, task])
        if chosen:  # a file from elsewhere: plain values of existing keys only
            for key, value in (o.split("=", 1) for o in read[names[task]]["chosen"]):
                check_plain_choice(key, value, cfg, chosen)
        grids[task] = [read[names[task]]["chosen"]] if chosen else (
            points if points != [[]] else _recipe_points(cfg))
        _check_init_keys(cfg, grids[task])
        for point in grids[task]:
            check_overrides([*fixed, task, *point])
    if dry_run:
        from .budget import describe

        launcher = compose_train(hydra_args, hydra=True).hydra.launcher if hydra_args else None
        jobs_of = {names[t]: (compose_train([*fixed, t, *grids[t][0]]), 0 if chosen else len(grids[t]), seeds)
                   for t in tasks}
        print(describe(jobs_of, launcher, pack, gpu_check))
        return {}
    summaries = {}
    with hydra_launcher(hydra_args, root) as launch:
        if chosen:
            choices = {task: read[names[task]] for task in tasks}
        else:
            jobs = {task: [plan([*fixed, task, *p, "data.protocol=tune"], root, f"{_slug(names[task], 40)}/grid",
                                _label(p)) for p in grids[task]] for task in tasks}
            run_phase(launch, [j for js in jobs.values() for j in js], overwrite, "grid", pack)
            choices = {task: choose(grids[task], jobs[task]) for task in tasks}
        finals = {task: [plan([*fixed, task, *c["chosen"], "data.protocol=final", f"seed={seed}",
                               f"tuned=[{','.join(o.split('=', 1)[0] for o in c['chosen'])}]"],
                              root, f"{_slug(names[task], 40)}/final", f"seed{seed}") for seed in range(seeds)]
                  for task, c in choices.items()}
        run_phase(launch, [j for js in finals.values() for j in js], overwrite, "final")
    for task, choice in choices.items():
        ok = [j.result for j in finals[task] if j.result.get("status") == "ok" and j.result.get("test")]
        summary = {"fixed": fixed, **choice, "final_test_acc1": [r["test"]["acc1"] for r in ok],
                   "final_failed": seeds - len(ok), "final_dirs": [str(j.folder) for j in finals[task]]}
        write_atomically(root / _slug(names[task], 40) / "tune_final.json",
                         lambda tmp: tmp.write_text(json.dumps(home_relative(summary), indent=2)))
        summaries[names[task]] = summary
    if not chosen:
        write_choices(root / HYPERPARAMETERS, {names[t]: c for t, c in choices.items()})
    print(table(summaries, seeds))
    print(f"study folder: {root}\nper-task choices: {root / HYPERPARAMETERS} (re-run the final runs only: the same "
          f"command with --chosen that file)\nthe report beside the published numbers: "
          f"python -m spt_lightning.report {root}")
    return summaries


def table(summaries: dict[str, dict[str, Any]], seeds: int) -> str:
    lines = [f"| task | chosen on val (last epoch) | val acc. (%) | test acc. (%, {seeds} seeds, last epoch) |",
             "| --- | --- | --- | --- |"]
    means, notes = [], []
    for task, s in summaries.items():
        tests = [100 * t for t in s["final_test_acc1"]]
        cell = "failed" if not tests else f"{statistics.mean(tests):.2f}" + (
            f" ± {statistics.stdev(tests):.2f}" if len(tests) > 1 else "")
        if s["final_failed"] and tests:
            cell += f" ({s['final_failed']} failed)"
        if tests:
            means.append(statistics.mean(tests))
        val = s["chosen_val_acc1_last"]
        lines.append(f"| {task} | {' '.join(s['chosen']) or '(defaults)'} | {'' if val is None else f'{100 * val:.2f}'} "
                     f"| {cell} |")
        if s["ties"]:
            notes.append(f"{task}: {len(s['ties'])} points tie on val ({'; '.join(' '.join(t) for t in s['ties'])})")
        notes += [f"{task}: {e}" for e in s["edge"]]
    if len(summaries) > 1 and means:
        lines.append(f"| mean of {len(means)} tasks | | | {statistics.mean(means):.2f} |")
    return "\n".join(lines + [f"note: {n}" for n in notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spt_lightning.tune", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="final runs per task (seeds 0..N-1; VPT used 5)")
    parser.add_argument("--out", type=Path, default=None, help="study folder (default: <log_dir>/tune/<the command>)")
    parser.add_argument("--chosen", type=Path, default=None,
                        help=f"a study's {HYPERPARAMETERS}: its per-task choices, no grid (the final runs only)")
    parser.add_argument("--pack", type=int, default=1, metavar="K",
                        help="train up to K grid points of a task in one process, on one backbone pass (default 1)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the jobs the study would submit, their resources and GPU-hours; start none")
    parser.add_argument("--gpu-check", type=Path, default=Path("gpu_check.json"),
                        help="`make gpu-check`'s output, whose measured step the dry run's GPU-hours use")
    args, overrides = parser.parse_known_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.pack < 1:
        parser.error("--pack must be >= 1 (1: every grid point in a process of its own)")
    try:
        tune_final(renamed(overrides), args.out, args.seeds, args.chosen, args.pack, args.dry_run, args.gpu_check)
    except SptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
