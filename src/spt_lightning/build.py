"""From the composed config to the objects a run is made of: callbacks, datamodule, model, LightningModule
and trainer. ``train`` tells the story; this module knows which key goes where.

Every group that mirrors an object is its ``_target_`` node (``data``, ``backbone``, ``pretrain``,
``model``, ``callbacks``, ``logger``); what another group decides is passed in here. Each constructor
checks its own settings, and none of them writes a file or fetches weights, so a bad value stops a run
before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from .backbones import Pretrain
from .data import TaskDataModule
from .errors import ConfigError, SptError, check_number
from .loggers import with_wandb_mode
from .methods import Method
from .models import PromptedViT
from .module import PromptTuningModule
from .progress import EpochLines, interactive


@dataclass
class Run:
    """The objects of one run, built and checked: nothing written, no data read, no weights fetched yet."""

    datamodule: TaskDataModule
    pretrain: Pretrain
    method: Method
    module: PromptTuningModule
    trainer: L.Trainer

    def load_weights(self) -> None:
        """Fetch and load the pretrained weights, then attach the method's modules (which rename or add tensors)."""
        self.pretrain.load(self.module.model.vit)
        self.module.model.attach(self.method)


def build_run(cfg: DictConfig, precision: str, selects: bool = True) -> Run:
    """``selects=False``: the trainer keeps no checkpoint chosen on val (a pack of grid points selects
    each point itself)."""
    callbacks = build_callbacks(cfg)
    pretrain = build(cfg.pretrain, _convert_="all")
    datamodule = build_datamodule(cfg, pretrain)
    method = build_method(cfg)
    module = build_module(cfg, build_model(cfg, pretrain), method)
    trainer = build_trainer(cfg, precision, callbacks, datamodule.has_val, selects)
    return Run(datamodule, pretrain, method, module, trainer)


def build_method(cfg: DictConfig) -> Method:
    """``cfg.method``, a ``_target_`` node naming a :class:`~spt_lightning.methods.Method`."""
    method = build(cfg.method, _convert_="all")
    if not isinstance(method, Method):
        raise ConfigError(f"method._target_={cfg.method._target_} is not a spt_lightning.methods.Method", "method")
    return method


def build_model(cfg: DictConfig, pretrain: Pretrain) -> PromptedViT:
    """The prompted ViT for ``cfg``, shaped for ``pretrain``'s weights (``pretrain.load(model.vit)`` loads
    them); ``prompt.length: null`` (linear, full, BitFit, LoRA, adapters): no prompts."""
    # (partial: Hydra would turn the Pretrain dataclass into a config node)
    vit = build(cfg.backbone, _partial_=True)(num_classes=cfg.task.num_classes, pretrain=pretrain)
    trainable = cfg.prompt.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ConfigError(f"prompt.trainable={trainable!r}: expected true or false", "prompt.trainable")
    return PromptedViT(vit, prompt_length=cfg.prompt.length, deep=cfg.prompt.deep, dropout=cfg.prompt.dropout,
                       head_feature=pretrain.head_feature, trainable_prompts=trainable)


def build_datamodule(cfg: DictConfig, pretrain: Pretrain) -> TaskDataModule:
    """``cfg.data`` (the datamodule's own keys) with what other groups decide: the task, the backbone's
    image size, the weights' normalisation and the run's seed."""
    mean, std = pretrain.normalisation(cfg.backbone.arch)
    return build(cfg.data, _convert_="all", task=plain(cfg.task), img_size=cfg.backbone.img_size, mean=mean, std=std,
                 seed=cfg.get("seed") or 0)


def build_module(cfg: DictConfig, model: PromptedViT, method: Method) -> PromptTuningModule:
    """``cfg.model`` (the LightningModule: optimizer, schedule, parameter groups) with the model and what other groups decide."""
    return build(cfg.model, _convert_="all")(model, num_classes=cfg.task.num_classes,
                                             finetune_backbone=method.trains_backbone,
                                             attention=cfg.attention, compile=cfg.compile)


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """Every callback of ``cfg.callbacks``; each constructor checks its own settings (``init.*``) here."""
    return instantiate_all(cfg.get("callbacks"))


def build_trainer(cfg: DictConfig, precision: str, callbacks: list[Any], has_val: bool,
                  selects: bool = True) -> L.Trainer:
    """The Lightning trainer, its loggers (W&B online only when logged in), and the protocol's changes:
    without a validation split nothing is validated and the last epoch is tested. Without a validation
    split, or ``selects=False``, no checkpoint is chosen on val."""
    check_number("trainer.max_epochs", cfg.trainer.max_epochs, 1, integer=True, hint=": training needs an epoch")
    loggers = instantiate_all(with_wandb_mode(cfg.get("logger")))
    kwargs = dict(cfg.trainer, precision=precision)
    if not has_val:
        kwargs.update(limit_val_batches=0, num_sanity_val_steps=0)
    if not (has_val and selects):
        callbacks = [cb for cb in callbacks if not (isinstance(cb, ModelCheckpoint) and cb.monitor)]
    # A progress bar with ETA in a terminal; one plain line per epoch otherwise (SLURM files, CI).
    kwargs["enable_progress_bar"] = kwargs.get("enable_progress_bar", True) and interactive()
    if not kwargs["enable_progress_bar"]:
        callbacks = [*callbacks, EpochLines()]
    return L.Trainer(**kwargs, callbacks=callbacks, logger=loggers or False,
                     default_root_dir=Path(cfg.paths.output_dir))


# Objects whose package is an extra of this project, and that extra.
EXTRAS = {"lightning.pytorch.loggers.TensorBoardLogger": "tensorboard"}


def build(node: DictConfig, **kwargs: Any) -> Any:
    """``instantiate(node, **kwargs)``; a constructor's refusal (an SptError) is raised as itself, with its
    own message, not wrapped in Hydra's InstantiationException."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, SptError):
            raise err.__cause__ from None
        if isinstance(err.__cause__, ImportError):  # e.g. TensorBoardLogger without tensorboard
            target = node.get("_target_")
            extra = EXTRAS.get(target)
            fix = f"pip install 'spt-lightning[{extra}]'" if extra else "install the package it names"
            raise ConfigError(f"{target} needs a package that is not installed ({err.__cause__}); {fix}") from None
        raise


def instantiate_all(group: DictConfig | None) -> list[Any]:
    return [build(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def plain(node: DictConfig | None) -> dict[str, Any]:
    return {} if node is None else OmegaConf.to_container(node, resolve=True)
