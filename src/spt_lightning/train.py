"""``train(cfg) -> results``: build everything from the config, fit, select on val, test once, report."""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from .backbones import build_vit
from .config import check_config
from .data import TaskDataModule
from .data.tasks import infer_num_classes
from .errors import SptError
from .models import PromptedViT
from .module import PromptTuningModule
from .precision import resolve_precision
from .progress import EpochLines, interactive
from .prototypes import PrototypeInit
from .results import format_summary, versions, write_results
from .runs import clear, resume_point, run_folder

log = logging.getLogger(__name__)

# NOTE: the frozen backbone is in eval mode on purpose (PromptedViT.train pins it there).
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def build_model(cfg: DictConfig) -> PromptedViT:
    """The prompted ViT for ``cfg``: backbone + pretrained weights + prompts (or none, for linear/full)."""
    vit = build_vit(
        cfg.backbone.arch,
        num_classes=cfg.task.num_classes,
        img_size=cfg.backbone.img_size,
        source=cfg.pretrain.source,
        tag=cfg.pretrain.get("tag"),
        file=cfg.pretrain.get("file"),
        format=cfg.pretrain.get("format", "timm"),
        global_pool=cfg.pretrain.get("global_pool"),
        strict=cfg.pretrain.get("strict", True),
        hint=cfg.pretrain.get("hint"),
        **_plain(cfg.backbone.get("kwargs")),
    )
    length = cfg.prompt.length if cfg.method.prompted else 0
    return PromptedViT(vit, prompt_length=length, deep=cfg.prompt.deep, dropout=cfg.prompt.dropout)


def normalisation(cfg: DictConfig) -> tuple[list[float], list[float]]:
    """The pretrained weights' mean/std: the pretrain config's, else timm's pretrained config of
    ``arch.tag`` (read from timm's registry: no download, so the data is checked before the weights)."""
    import timm

    name = f"{cfg.backbone.arch}.{cfg.pretrain.tag}" if cfg.pretrain.get("tag") else cfg.backbone.arch
    try:
        pretrained_cfg = timm.models.get_pretrained_cfg(name).to_dict()
    except (RuntimeError, AttributeError):  # an arch timm does not know: build_model names the problem
        pretrained_cfg = {}
    mean = cfg.pretrain.get("mean") or pretrained_cfg.get("mean", (0.5, 0.5, 0.5))
    std = cfg.pretrain.get("std") or pretrained_cfg.get("std", (0.5, 0.5, 0.5))
    return list(mean), list(std)


def build_datamodule(cfg: DictConfig) -> TaskDataModule:
    mean, std = normalisation(cfg)
    return TaskDataModule(
        OmegaConf.to_container(cfg.task, resolve=True),
        img_size=cfg.backbone.img_size,
        mean=mean,
        std=std,
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=cfg.data.pin_memory,
        protocol=cfg.data.protocol,
        fraction=cfg.data.fraction,
        seed=cfg.get("seed") or 0,
        skip_corrupt=cfg.data.skip_corrupt,
    )


def _with_wandb_mode(group: DictConfig | None) -> DictConfig | None:
    """``logger.wandb.offline: null`` → online when logged in, offline otherwise (never prompt for a login)."""
    wandb_cfg = (group or {}).get("wandb")
    if wandb_cfg is None or wandb_cfg.get("offline") is not None:
        return group
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    if not logged_in:
        log.info("W&B: not logged in, logging offline into %s (upload later with `wandb sync`)", wandb_cfg.save_dir)
    group = group.copy()
    group.wandb.offline = not logged_in
    return group


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    try:
        return [instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]
    except InstantiationException as err:  # a constructor refused a setting: its own message says which
        if isinstance(err.__cause__, SptError):
            raise err.__cause__ from None
        raise


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
    check_config(cfg)
    with open_dict(cfg):  # a resumed run writes into its own folder
        cfg.paths.output_dir = run_folder(cfg.resume, cfg.paths.output_dir)
    callbacks = _instantiate_all(cfg.get("callbacks"))  # each checks its own settings (init.*) here
    ckpt_path = claim_run_folder(cfg)
    precision, precision_reason = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    log.info("Precision %s (%s)", precision, precision_reason)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)

    if cfg.task.num_classes is None:  # task=folder: count the class folders
        cfg.task.num_classes = infer_num_classes(OmegaConf.to_container(cfg.task, resolve=True))
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")  # a missing or empty split stops the run here, before any work or download
    model = build_model(cfg)
    module = PromptTuningModule(
        model,
        num_classes=cfg.task.num_classes,
        optimizer=instantiate(cfg.optim.optimizer),
        param_groups=_plain(cfg.optim.get("param_groups")),
        warmup_epochs=cfg.optim.warmup_epochs,
        finetune_backbone=cfg.method.finetune_backbone,
        attention=cfg.attention,
        compile=cfg.compile,
    )
    loggers = _instantiate_all(_with_wandb_mode(cfg.get("logger")))
    trainer_kwargs = dict(cfg.trainer, precision=precision)
    if not datamodule.has_val:  # protocol=final: no validation split; the last epoch is tested
        trainer_kwargs.update(limit_val_batches=0, num_sanity_val_steps=0)
        callbacks = [cb for cb in callbacks if not (isinstance(cb, ModelCheckpoint) and cb.monitor)]
    # A progress bar with ETA in a terminal; one plain line per epoch otherwise (SLURM files, CI).
    trainer_kwargs["enable_progress_bar"] = trainer_kwargs.get("enable_progress_bar", True) and interactive()
    if not trainer_kwargs["enable_progress_bar"]:
        callbacks.append(EpochLines())
    trainer = L.Trainer(**trainer_kwargs, callbacks=callbacks, logger=loggers or False, default_root_dir=output_dir)
    failed = True
    try:
        for logger in loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        fit_started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_time = time.perf_counter() - fit_started
        selection = _selected_epoch(trainer)
        test_started = time.perf_counter()
        best = selection.pop("path")
        test_metrics = trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False) if datamodule.has_test else []
        test_time = time.perf_counter() - test_started
        results = {
            "status": "ok",
            "task": cfg.task.name,
            "group": cfg.task.get("group"),
            "protocol": datamodule.protocol,
            "method": cfg.method.name,
            "prompt_length": module.model.prompt_length,
            "prompt_deep": bool(cfg.prompt.deep),
            "prompt_init": cfg.prompt.init if module.model.prompt_length else None,
            "backbone": cfg.backbone.arch,
            "img_size": cfg.backbone.img_size,
            "pretrain": cfg.pretrain.name,
            "precision": {"used": precision, "why": precision_reason},
            "seed": cfg.get("seed"),
            "parameters": module.parameter_counts(),
            "selection": selection,
            "test": {k.split("/", 1)[1]: v for k, v in (test_metrics[0] if test_metrics else {}).items()},
            "test_correct": module.test_correct if test_metrics else None,
            "init": _init_stats(trainer),
            "timings": _timings(trainer, fit_time, test_time, time.perf_counter() - started),
            "resumed_from": None if ckpt_path is None else str(ckpt_path),
            "output_dir": str(output_dir),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "versions": versions(),
        }
        _summarise(loggers, results)
        failed = False
    finally:
        _finish(loggers, failed)

    if trainer.is_global_zero:
        write_results(output_dir, results)
        print(format_summary(results), flush=True)
    return results


def _summarise(loggers: list[Any], results: dict[str, Any]) -> None:
    """Final figures into the W&B run summary (test accuracy, parameter counts, init time)."""
    summary = {f"test/{k}": v for k, v in results["test"].items()}
    summary |= {f"params/{k}": v for k, v in results["parameters"].items()}
    summary |= {"selected_epoch": results["selection"]["epoch"], "init/time": results["timings"]["init"]}
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "summary") and hasattr(experiment.summary, "update"):
            experiment.summary.update(summary)


def _selected_epoch(trainer: L.Trainer) -> dict[str, Any]:
    """The epoch chosen on validation, with its checkpoint path (``None`` if checkpointing is off)."""
    epochs = trainer.max_epochs
    ckpt = next((cb for cb in trainer.checkpoint_callbacks if cb.monitor == "val/acc1"), None)
    if ckpt is None or not ckpt.best_model_path:
        val = trainer.callback_metrics.get("val/acc1")
        return {"epoch": trainer.current_epoch, "epochs": epochs, "val_acc1": _float(val), "path": None}
    epoch = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["epoch"]
    return {"epoch": epoch + 1, "epochs": epochs, "val_acc1": _float(ckpt.best_model_score), "path": ckpt.best_model_path}


def _init_stats(trainer: L.Trainer) -> dict[str, Any]:
    return next((cb.stats for cb in trainer.callbacks if isinstance(cb, PrototypeInit)), {})


def _timings(trainer: L.Trainer, fit: float, test: float, total: float) -> dict[str, float]:
    """Seconds: prompt init (inside fit), training (fit without init), test, and the whole run."""
    init = _init_stats(trainer).get("time", 0.0)
    return {"init": init, "train": fit - init, "test": test, "total": total}


def _plain(node: DictConfig | None) -> dict[str, Any]:
    return {} if node is None else OmegaConf.to_container(node, resolve=True)


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def _finish(loggers: list[Any], failed: bool) -> None:
    """Close loggers that hold a live run (W&B), also when the run failed (marked as such)."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish(exit_code=1 if failed else 0)
