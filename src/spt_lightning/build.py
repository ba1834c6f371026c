"""From the composed config to the objects a run is made of: model, datamodule, LightningModule, callbacks,
loggers and trainer. ``train`` tells the story; this module knows which key goes where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from .backbones import build_vit
from .data import TaskDataModule
from .errors import SptError
from .loggers import with_wandb_mode
from .models import PromptedViT
from .module import PromptTuningModule
from .progress import EpochLines, interactive


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
        **plain(cfg.backbone.get("kwargs")),
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
    """``cfg.data`` (the datamodule's own keys) with what other groups decide: the task, the backbone's
    image size, the weights' normalisation and the run's seed."""
    mean, std = normalisation(cfg)
    return build(cfg.data, _convert_="all", task=plain(cfg.task), img_size=cfg.backbone.img_size, mean=mean, std=std,
                 seed=cfg.get("seed") or 0)


def build_module(cfg: DictConfig, model: PromptedViT) -> PromptTuningModule:
    """``cfg.optim`` (the module's optimisation keys) with the model and what other groups decide."""
    return build(cfg.optim, _convert_="all")(model, num_classes=cfg.task.num_classes,
                                             finetune_backbone=cfg.method.finetune_backbone,
                                             attention=cfg.attention, compile=cfg.compile)


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """Every callback of ``cfg.callbacks``; each constructor checks its own settings (``init.*``) here."""
    return instantiate_all(cfg.get("callbacks"))


def build_trainer(cfg: DictConfig, precision: str, callbacks: list[Any], has_val: bool) -> L.Trainer:
    """The Lightning trainer, its loggers (W&B online only when logged in), and the protocol's changes:
    without a validation split nothing is validated and the last epoch is tested."""
    loggers = instantiate_all(with_wandb_mode(cfg.get("logger")))
    kwargs = dict(cfg.trainer, precision=precision)
    if not has_val:
        kwargs.update(limit_val_batches=0, num_sanity_val_steps=0)
        callbacks = [cb for cb in callbacks if not (isinstance(cb, ModelCheckpoint) and cb.monitor)]
    # A progress bar with ETA in a terminal; one plain line per epoch otherwise (SLURM files, CI).
    kwargs["enable_progress_bar"] = kwargs.get("enable_progress_bar", True) and interactive()
    if not kwargs["enable_progress_bar"]:
        callbacks = [*callbacks, EpochLines()]
    return L.Trainer(**kwargs, callbacks=callbacks, logger=loggers or False,
                     default_root_dir=Path(cfg.paths.output_dir))


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; a constructor's refusal (an SptError) is raised as itself, with its
    own message, not wrapped in Hydra's InstantiationException."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, SptError):
            raise err.__cause__ from None
        raise


def instantiate_all(group: DictConfig | None) -> list[Any]:
    return [build(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def plain(node: DictConfig | None) -> dict[str, Any]:
    return {} if node is None else OmegaConf.to_container(node, resolve=True)
