"""The one story every run follows, a single run, a resumed one and each pack of grid points alike:

    settle the config → inspect the folder → build → read the data, fetch the weights → claim the folder
    → the run's own part (fit; select and test; record) → commit

A step that refuses raises before anything is written; a failure at any later step releases the folder,
which puts back a run that ``overwrite=true`` was replacing (runs.RunFolder). No step edits the composed
config: what a run decides (its folder, a folder task's class count) makes a new config (:func:`settled`).
``train.train`` tells it for one run, ``packed_train.train_packed`` for K grid points sharing one pass.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from .build import Run
from .config import naming_the_recipe
from .console import CONSOLE
from .loggers import continue_wandb_run
from .precision import resolve_precision
from .runs import RunFolder

log = logging.getLogger(__name__)
Outcome = TypeVar("Outcome")


def settled(cfg: DictConfig, changes: dict[str, Any]) -> DictConfig:
    """A new config: ``cfg`` with ``changes`` (dotted keys) set; ``cfg`` itself is left as composed."""
    new = copy.deepcopy(cfg)
    with open_dict(new):
        for key, value in changes.items():
            OmegaConf.update(new, key, value, merge=False)
    return new


def counted_classes(cfg: DictConfig) -> int:
    """The task's classes: as configured, or as its family counts them (``task=folder``: its class folders)."""
    from .data.families import family_of

    task = OmegaConf.to_container(cfg.task, resolve=True)
    return cfg.task.num_classes or family_of(task).num_classes(task)


def tell(cfg: DictConfig, folder: RunFolder, build: Callable[[str], Run],
         own_part: Callable[[Run, tuple[str, str], float], Outcome]) -> Outcome:
    """The story from the build on, for a ``folder`` already inspected: ``build(precision)`` the run's
    objects (each constructor checks its settings), read the data and fetch the weights, claim the folder,
    then ``own_part(run, precision, started)`` (fit, and what the run records); the folder is committed
    once it returns and released whatever happens."""
    if folder.checkpoint is not None:
        continue_wandb_run(cfg, folder.path)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()
    with naming_the_recipe(cfg):
        run = build(precision[0])
    # The data (a missing split stops here) and the weights come before the claim: an overwrite=true
    # sets the old run aside only once the new one has both.
    run.datamodule.setup("fit")
    run.load_weights()
    folder.claim(cfg)
    try:
        if folder.checkpoint is not None:
            log.info("Continuing the run in %s from %s", folder.path, folder.checkpoint, extra=CONSOLE)
        log.info("Precision %s (%s)", *precision)
        outcome = own_part(run, precision, started)
        folder.commit()  # overwrite=true: the run this one replaced is deleted only now
        return outcome
    finally:  # a run that did not finish gives the folder back to the run it replaced
        folder.release()


def fit(run: Run, module: L.LightningModule, checkpoint) -> float:
    """``Trainer.fit`` of ``module`` (the run's, or a pack's) from ``checkpoint`` (``None``: a fresh
    start), checkpoints read without running code; returns its seconds."""
    started = time.perf_counter()
    run.trainer.fit(module, datamodule=run.datamodule, ckpt_path=checkpoint, weights_only=True)
    return time.perf_counter() - started

