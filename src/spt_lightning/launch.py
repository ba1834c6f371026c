"""Batches of runs through Hydra's launcher: ``hydra/launcher=basic`` (one after another, the default),
``joblib`` (N side by side on one machine), ``submitit_slurm`` (one SLURM job each), or any launcher plugin.

A launcher takes the job's full override list, composes its config as a ``-m`` sweep would, and runs the
same task function as ``python -m spt_lightning -m ...`` (``jobs.run_job``): a study's runs are ordinary
runs, in folders the caller names (``hydra.sweep.dir`` / ``hydra.sweep.subdir``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import check_launcher
from .errors import ConfigError


def launcher_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """Split a command line into Hydra's own overrides (``hydra/...``, ``hydra.*``) and the runs'."""
    own = [o for o in overrides if o.lstrip("+~").startswith(("hydra/", "hydra."))]
    return own, [o for o in overrides if o not in own]


@contextmanager
def hydra_launcher(overrides: list[str], sweep_dir: Path) -> Iterator[Callable[..., None]]:
    """``launch(jobs, packed=False)`` for the launcher that Hydra's ``overrides`` choose; each job is a full
    override list of a run (its folder given by ``hydra.sweep.subdir=...`` under ``sweep_dir``), or with
    ``packed`` of a pack of grid points (``jobs.run_pack``: the points are in its folder's pack.json)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.experimental.callback import Callback
    from hydra.core.plugins import Plugins
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext, RunMode

    from .jobs import run_job, run_pack

    check_launcher(overrides)
    setup_globals()  # Hydra's resolvers (now, hydra) as in a command-line run
    with initialize_config_module(version_base="1.3", config_module="spt_lightning.conf"):
        hydra = GlobalHydra.instance().hydra
        cfg = hydra.compose_config("train", [*overrides, "hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep_dir}"],
                                   run_mode=RunMode.MULTIRUN)
        # A launcher calls its context's job hooks; the project's config declares no hydra.callbacks, so
        # Hydra's public no-op Callback stands in for Hydra's (private) dispatcher of them.
        if cfg.hydra.callbacks:
            raise ConfigError(f"hydra.callbacks={list(cfg.hydra.callbacks)}: tune's launcher runs no Hydra "
                              f"callbacks; use Lightning callbacks (callbacks=...) instead", "hydra.callbacks")
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callback())
        launchers = {}
        launched = 0

        def launch(jobs: list[list[str]], packed: bool = False) -> None:
            nonlocal launched
            if not jobs:
                return
            if packed not in launchers:
                launchers[packed] = Plugins.instance().instantiate_launcher(
                    hydra_context=context, task_function=run_pack if packed else run_job, config=cfg)
            launchers[packed].launch(jobs, initial_job_idx=launched)
            launched += len(jobs)

        yield launch
