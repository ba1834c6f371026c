"""Shared fixtures: tiny ViTs and composed configs that run on the CPU in seconds."""

from __future__ import annotations

import os

import pytest
import timm
import torch
from omegaconf import DictConfig, open_dict

from spt_lightning.config import compose_train

# No global WANDB_MODE: a test that logs to W&B says offline itself (logger.wandb.offline=true, or a clean
# environment where wandb has no login), so the path a user takes without WANDB_MODE is the one tested.
os.environ.setdefault("WANDB_SILENT", "true")

TINY = dict(img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=2)


def tiny_vit(num_classes: int = 5, **overrides) -> torch.nn.Module:
    """A 32 px, patch-4, width-64 ViT (64 patch tokens) built by timm."""
    return timm.create_model("vit_tiny_patch16_224", num_classes=num_classes, **{**TINY, **overrides})


def compose_cfg(tmp_path, overrides: list[str] = (), fast: bool = True) -> DictConfig:
    """The real configs, composed as the CLI would (``debug=fast`` unless ``fast=False``), writing into ``tmp_path``."""
    base = ["task=demo/synthetic", "debug=fast"] if fast else ["task=demo/synthetic"]
    cfg = compose_train([*base, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.init.cache_dir = str(tmp_path / "prototypes")
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    return lambda *overrides: compose_cfg(tmp_path, list(overrides))
