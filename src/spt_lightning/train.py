"""``train(cfg) -> results``: check, build, initialise the prompts, fit, select on val, test once, record."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from .build import build_callbacks, build_datamodule, build_model, build_module, build_trainer
from .config import check_config
from .data.tasks import infer_num_classes
from .loggers import finish, summarise
from .precision import resolve_precision
from .results import collect, format_summary, selected_epoch, write_results
from .runs import clear, resume_point, run_folder

log = logging.getLogger(__name__)

# NOTE: the frozen backbone is in eval mode on purpose (PromptedViT.train pins it there).
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def claim_run_folder(cfg: DictConfig) -> Path | None:
    """Check that this run may write into its folder (before any work) and return the checkpoint it
    continues from."""
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path, stale = resume_point(output_dir, cfg.resume, cfg.overwrite)
    if rank_zero_only.rank == 0:  # other DDP ranks start once rank 0 has claimed the folder
        if stale:
            clear(output_dir)
        (output_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, output_dir / ".hydra" / "config.yaml")
    if ckpt_path is not None:
        log.info("Continuing the run in %s from %s", output_dir, ckpt_path)
    return ckpt_path


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit on train, choose the epoch on val, test that epoch once; write and return ``results.json``."""
    # 1. Everything that can be refused is refused before anything is written.
    check_config(cfg)
    with open_dict(cfg):  # a resumed run writes into its own folder
        cfg.paths.output_dir = run_folder(cfg.resume, cfg.paths.output_dir)
    callbacks = build_callbacks(cfg)
    ckpt_path = claim_run_folder(cfg)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    log.info("Precision %s (%s)", *precision)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()

    # 2. Build: the data first (a missing split stops here, before any download), then the model.
    if cfg.task.num_classes is None:  # task=folder: count the class folders
        cfg.task.num_classes = infer_num_classes(OmegaConf.to_container(cfg.task, resolve=True))
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    module = build_module(cfg, build_model(cfg))
    trainer = build_trainer(cfg, precision[0], callbacks, datamodule.has_val)

    # 3. Fit (the prompt-init callback runs first), select on val, test once, record.
    failed = True
    try:
        for logger in trainer.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        fit_started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_time = time.perf_counter() - fit_started
        selection = selected_epoch(trainer)
        best = selection.pop("path")
        test_started = time.perf_counter()
        test_metrics = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False) \
            if datamodule.has_test else []
        seconds = {"fit": fit_time, "test": time.perf_counter() - test_started, "total": time.perf_counter() - started}
        results = collect(cfg, trainer, module, datamodule.protocol, selection, test_metrics, seconds, precision,
                          ckpt_path)
        summarise(trainer.loggers, results)
        failed = False
    finally:
        finish(trainer.loggers, failed)

    if trainer.is_global_zero:
        write_results(Path(cfg.paths.output_dir), results)
        print(format_summary(results), flush=True)
    return results
