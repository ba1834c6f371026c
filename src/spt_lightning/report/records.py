"""The report's records, built once from results.json files: a :class:`Setting` (what makes runs comparable:
runs that differ only in seed and task share one) and an :class:`Entry` (its runs' outcomes per task and
seed, the group means, parameter counts). Tables, figures, the published pairing and the statistics all
take these records. Torch-free."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..results import RESULTS, read_results
from ..settings import settings

GROUP_TITLES = {"fgvc": "FGVC", "vtab_natural": "VTAB Natural", "vtab_specialized": "VTAB Specialized",
                "vtab_structured": "VTAB Structured"}
# Beside the keys that never change a result (settings.NEUTRAL), what does not make a run another setting:
# its seed (runs that differ only in it are averaged), its task (a column), and the keys that `tune` chose
# for its task (``tuned``: a per-task choice, so a study's final runs form one setting). The prototype-init
# callback's node is the ``init`` node again (``callbacks.prototype_init: ${init}``), compared there.
NOT_SETTING = ("seed", "init.seed", "task.", "tuned", "callbacks.prototype_init.")


@dataclass(frozen=True)
class Setting:
    """What makes runs comparable: the table's columns (method, pretrain, backbone, P) and every other
    config key (flattened, values as JSON) but seed, task and the keys a study tuned per task."""

    method: str
    pretrain: str
    backbone: str
    prompt_length: int | None
    config: tuple[tuple[str, str], ...]

    COLUMNS = ("method", "pretrain", "backbone", "prompt_length")

    @property
    def columns(self) -> tuple[Any, ...]:
        return self.method, self.pretrain, self.backbone, self.prompt_length

    def value(self, key: str, default: Any = None) -> Any:
        """A config value (``"prompt.init"``), decoded; ``default`` when the setting has no such key."""
        found = dict(self.config).get(key)
        return default if found is None else json.loads(found)

    def has(self, key: str) -> bool:
        return key in dict(self.config)

    def beside(self, leave_out: Callable[[str], bool]) -> tuple:
        """The setting without the config keys ``leave_out`` names and without its method and P columns
        (``prompt.length`` is a config key too): what two settings compared along those keys (SPT and VPT,
        two inits, two methods) share."""
        return self.pretrain, self.backbone, tuple((k, v) for k, v in self.config if not leave_out(k))

    @property
    def prompted(self) -> bool:
        return bool(self.prompt_length)

    @property
    def init(self) -> str | None:
        """The prompts' init (``prompt.init``); ``None`` for a setting without prompts."""
        return self.value("prompt.init") if self.prompted else None

    def order(self) -> tuple[str, ...]:
        return tuple(map(str, (*self.columns, self.config)))


@dataclass
class Entry:
    """The finished, tested runs of one setting: accuracies (%) per task in seed order, the run folder per
    task and seed, each task's group, the per-task and group means, parameter counts, init seconds, and
    the test images each run got right (for paired tests)."""

    tasks: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    seeds: dict[str, dict[Any, str]] = field(default_factory=lambda: defaultdict(dict))
    group_of: dict[str, str] = field(default_factory=dict)
    params: dict[str, int] | None = None
    correct: dict[tuple[str, Any], str] = field(default_factory=dict)
    init_s: list[float] = field(default_factory=list)
    repeated: list[tuple[str, str]] = field(default_factory=list)
    standard: bool = True            # every run on the papers' splits (published numbers go beside these only)
    images: str | None = None        # the splits' image format (jpeg, lossless, mixed)
    per_task: dict[str, float] = field(default_factory=dict)
    groups: dict[str, float | None] = field(default_factory=dict)

    def by_seed(self, task: str) -> dict[Any, float]:
        """This task's accuracy per seed."""
        return dict(zip(self.seeds[task], self.tasks[task]))


@functools.cache
def catalogue() -> dict[str, list[str]]:
    """Each benchmark group's tasks: the ``group`` of each task as Hydra composes it, in the order of the
    ready sweeps that list them (experiment/fgvc_all, vtab_all: the papers' order). Composed on first use."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    from ..config import compose_train

    groups: dict[str, list[str]] = defaultdict(list)
    for sweep in ("fgvc_all", "vtab_all"):
        with (files("spt_lightning.conf") / "experiment" / f"{sweep}.yaml").open() as f:
            tasks = str(OmegaConf.load(f).hydra.sweeper.params.task).split(",")
        for task in tasks:
            groups[compose_train([f"task={task}"]).task.group].append(task)
    return dict(groups)


def setting_of(run: dict[str, Any]) -> Setting:
    """The run's settings without its seed, task and tuned keys: runs with equal ones are seeds of one entry."""
    config = run.get("config", {})
    tuned = set(config.get("tuned") or [])
    flat = {k: json.dumps(v) for k, v in settings(config).items()
            if k not in tuned and not any(k == n or k.startswith(n if n.endswith(".") else f"{n}.") for n in NOT_SETTING)}
    return Setting(*(run.get(k) for k in Setting.COLUMNS), tuple(sorted(flat.items())))


def load_runs(dirs: list[Path]) -> list[dict[str, Any]]:
    """Every results.json under ``dirs`` (a run set aside by an ongoing ``overwrite=true`` aside), with its
    folder as ``path``."""
    runs = []
    for d in dirs:
        for path in sorted(Path(d).rglob(RESULTS)):
            if any(part.startswith(".") for part in path.relative_to(d).parts[:-1]):
                continue  # a run set aside while overwrite=true replaces it (runs.REPLACED)
            run = read_results(path)
            run["path"] = str(path.parent)
            runs.append(run)
    return runs


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def aggregate(runs: list[dict[str, Any]]) -> dict[Setting, Entry]:
    """Per setting: per-task test accuracies over seeds, the group figures, and parameter counts."""
    entries: dict[Setting, Entry] = defaultdict(Entry)
    for run in runs:
        if run.get("status", "ok") != "ok" or not run.get("test"):
            continue  # failed, or a tune run (no test by protocol)
        entry = entries[setting_of(run)]
        seeds = entry.seeds[run["task"]]
        if run.get("seed") in seeds:  # the same run twice (a copy, a rerun): counted once, flagged
            entry.repeated.append((run.get("path"), seeds[run.get("seed")]))
            continue
        seeds[run.get("seed")] = run.get("path")
        # published numbers go beside runs on the papers' splits only (results.json "splits"); JPEG images marked
        entry.standard &= bool(run.get("splits", {}).get("standard"))
        images = run.get("splits", {}).get("images")
        entry.images = images if entry.images in (None, images) else "mixed"
        entry.tasks[run["task"]].append(100.0 * run["test"]["acc1"])
        entry.group_of[run["task"]] = run.get("group")  # the group each result carries
        entry.params = run["parameters"]
        if run.get("test_correct"):  # which test images it got right: for paired tests between settings
            entry.correct[(run["task"], run.get("seed"))] = run["test_correct"]
        entry.init_s.append(run.get("timings", {}).get("init", 0.0))
    for entry in entries.values():
        _group_means(entry)
    return dict(entries)


def _group_means(entry: Entry) -> None:
    entry.per_task = {t: mean(v) for t, v in entry.tasks.items()}
    members = defaultdict(list)
    for task, group in entry.group_of.items():
        members[group].append(task)
    # a group's mean needs every task of the group (as many as the catalogue has)
    entry.groups = {title: mean([entry.per_task[t] for t in members[g]]) if len(members[g]) == len(catalogue()[g])
                    else None for g, title in GROUP_TITLES.items()}
    vtab = [g for g in GROUP_TITLES if g.startswith("vtab_")]
    complete = all(entry.groups[GROUP_TITLES[g]] is not None for g in vtab)
    tasks = [t for g in vtab for t in members[g]]
    entry.groups["VTAB mean of 19 tasks"] = mean([entry.per_task[t] for t in tasks]) if complete else None
    entry.groups["VTAB mean of 3 groups"] = mean([entry.groups[GROUP_TITLES[g]] for g in vtab]) if complete else None
