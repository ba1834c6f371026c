"""``train(cfg) -> results``: check, build, initialise the prompts, fit, select on val, test once, record."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from .build import build_run
from .config import check_config, naming_the_recipe
from .console import CONSOLE
from .data.tasks import infer_num_classes
from .files import home_relative
from .loggers import continue_wandb_run, finish, summarise
from .precision import resolve_precision
from .record import collect, selected_epoch
from .results import format_summary, write_results
from .resolvers import RESUME_MODES, run_folder
from .runs import RunFolder, own_settings

log = logging.getLogger(__name__)



def train(cfg: DictConfig, overrides: list[str] | None = None) -> dict[str, Any]:
    """Fit on train (validating on val), test once the epoch ``select_epoch`` names; write and return
    ``results.json``.

    ``overrides``: the command line that composed ``cfg`` (default: Hydra's record of it), which a resumed
    run checks against the settings it was started with."""
    # 1. Everything that can be refused is refused before anything is written or downloaded.
    if cfg.resume not in RESUME_MODES:  # resume=<run>: the settings it was started with
        if overrides is None:
            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        cfg = own_settings(cfg, overrides)
    check_config(cfg)
    with open_dict(cfg):  # a resumed run writes into its own folder
        cfg.paths.output_dir = run_folder(cfg.resume, cfg.paths.output_dir)
        if cfg.task.num_classes is None:  # task=folder: count the class folders
            cfg.task.num_classes = infer_num_classes(OmegaConf.to_container(cfg.task, resolve=True))
    folder = RunFolder(Path(cfg.paths.output_dir)).inspect(cfg)
    ckpt_path = folder.checkpoint
    if ckpt_path is not None:
        continue_wandb_run(cfg, Path(cfg.paths.output_dir))
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()
    with naming_the_recipe(cfg):
        run = build_run(cfg, precision[0])  # each constructor checks its settings

    # 2. Read the data (a missing split stops here) and fetch the weights, then claim the folder: an
    #    overwrite=true replaces a finished run only once the new one has its data and weights.
    datamodule, module, trainer = run.datamodule, run.module, run.trainer
    datamodule.setup("fit")
    run.load_weights()
    folder.claim(cfg)
    if ckpt_path is not None:
        log.info("Continuing the run in %s from %s", cfg.paths.output_dir, ckpt_path, extra=CONSOLE)
    log.info("Precision %s (%s)", *precision)

    # 3. Fit (the prompt-init callback runs first), select on val, test once, record.
    try:
        results = _fit_select_test(cfg, run, ckpt_path, precision, started)
        if trainer.is_global_zero:
            write_results(Path(cfg.paths.output_dir), results)
            folder.commit()  # overwrite=true: the run this one replaced is deleted only now
            print(format_summary(results), flush=True)
    finally:  # a run that did not finish gives the folder back to the run it replaced
        folder.release()
    return results


def _fit_select_test(cfg: DictConfig, run, ckpt_path: Path | None, precision: tuple[str, str],
                     started: float) -> dict[str, Any]:
    datamodule, module, trainer = run.datamodule, run.module, run.trainer
    failed = True
    try:
        for logger in trainer.loggers:
            logger.log_hyperparams(home_relative(OmegaConf.to_container(cfg, resolve=True)))
        fit_started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        fit_time = time.perf_counter() - fit_started
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
    return results
