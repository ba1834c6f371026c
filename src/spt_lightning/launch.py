"""Batches of runs through Hydra's launcher: ``hydra/launcher=basic`` (one after another, the default),
``joblib`` (N side by side on one machine), ``submitit_slurm`` (one SLURM job each), or any launcher plugin.

A launcher takes the job's full override list, composes its config as a ``-m`` sweep would, and runs the
same task function as ``python -m spt_lightning -m ...`` (``__main__.run``): a study's runs are ordinary
runs, in folders the caller names (``hydra.sweep.dir`` / ``hydra.sweep.subdir``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import check_launcher


def launcher_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Split a command line into Hydra's own overrides (``hydra/...``, ``hydra.*``) and the runs'."""
    own = [o for o in overrides if o.lstrip("+~").startswith(("hydra/", "hydra."))]
    return own, [o for o in overrides if o not in own]


@contextmanager
def hydra_launcher(overrides: list[str], sweep_dir: Path) -> Iterator[Callable[..., None]]:
    """``launch(jobs, packed=False)`` for the launcher that Hydra's ``overrides`` choose; each job is a full
    override list of a run (its folder given by ``hydra.sweep.subdir=...`` under ``sweep_dir``), or with
    ``packed`` of a pack of grid points (``__main__.run_pack``: the points are in its folder's pack.json)."""
    from hydra import initialize_config_module
    from hydra._internal.callbacks import Callbacks  # what Hydra's own multirun hands its launcher
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.plugins import Plugins
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext, RunMode

    from .__main__ import run, run_pack

    check_launcher(overrides)
    setup_globals()  # Hydra's resolvers (now, hydra) as in a command-line run
    with initialize_config_module(version_base="1.3", config_module="spt_lightning.conf"):
        hydra = GlobalHydra.instance().hydra
        cfg = hydra.compose_config("train", [*overrides, "hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep_dir}"],
                                   run_mode=RunMode.MULTIRUN)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(cfg))
        launchers = {}
        launched = 0

        def launch(jobs: list[list[str]], packed: bool = False) -> None:
            nonlocal launched
            if not jobs:
                return
            if packed not in launchers:
                launchers[packed] = Plugins.instance().instantiate_launcher(
                    hydra_context=context, task_function=run_pack if packed else run, config=cfg)
            launchers[packed].launch(jobs, initial_job_idx=launched)
            launched += len(jobs)

        yield launch
