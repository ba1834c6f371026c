"""``train(cfg) -> results``: one run's telling of the story (``story.py``): settle the config, inspect the
folder, build, load, claim, fit, test the epoch ``select_epoch`` names, record."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .build import Run, build_run
from .config import check_config
from .files import home_relative
from .loggers import finish, summarise
from .record import collect, selected_epoch
from .resolvers import RESUME_MODES, run_folder
from .results import format_summary, write_results
from .runs import RunFolder, own_settings
from .story import counted_classes, fit, settled, tell


def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Fit on train (validating on val), test once the epoch ``select_epoch`` names; write and return
    ``results.json``.

    ``overrides``: the command line that composed ``cfg`` (default: Hydra's record of it), which a resumed
    run checks against the settings it was started with."""
    # Everything that can be refused is refused before anything is written or downloaded.
    if cfg.resume not in RESUME_MODES:  # resume=<run>: the settings it was started with
        if overrides is None:
            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        cfg = own_settings(cfg, overrides)
    check_config(cfg)
    cfg = settled(cfg, {"paths.output_dir": run_folder(cfg.resume, cfg.paths.output_dir),  # a resumed run's own
                        "task.num_classes": counted_classes(cfg)})
    folder = RunFolder(Path(cfg.paths.output_dir)).inspect(cfg)
    return tell(cfg, folder, lambda precision: build_run(cfg, precision),
                lambda run, precision, started: _fit_select_test(cfg, run, folder.checkpoint, precision, started))


def _fit_select_test(cfg: DictConfig, run: Run, ckpt_path: Path | None, precision: tuple[str, str],
                     started: float) -> dict[str, Any]:
    datamodule, module, trainer = run.datamodule, run.module, run.trainer
    failed = True
    try:
        for logger in trainer.loggers:
            logger.log_hyperparams(home_relative(OmegaConf.to_container(cfg, resolve=True)))
        fit_time = fit(run, module, ckpt_path)
        selection = selected_epoch(trainer, cfg.select_epoch)
        best = selection.pop("path")
        test_started = time.perf_counter()
        test_metrics = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False,
                                    weights_only=True) \
            if datamodule.has_test else []
        seconds = {"fit": fit_time, "test": time.perf_counter() - test_started, "total": time.perf_counter() - started}
        results = collect(cfg, trainer, module, datamodule, selection, test_metrics, seconds, precision, ckpt_path)
        summarise(trainer.loggers, results)
        failed = False
    finally:
        finish(trainer.loggers, failed)
    if trainer.is_global_zero:
        write_results(Path(cfg.paths.output_dir), results)
        print(format_summary(results), flush=True)
    return results
