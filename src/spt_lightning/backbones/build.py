"""Build a timm ``VisionTransformer`` for a task: the architecture, ready for its pretrained weights."""

from __future__ import annotations

from typing import Any

import timm
from timm.models.vision_transformer import VisionTransformer

from ..models.heads import HEAD_FEATURES
from .checkpoints import BackboneError
from .pretrain import Pretrain


def build_vit(arch: str, num_classes: int, img_size: int, pretrain: Pretrain | None = None,
              **kwargs: Any) -> VisionTransformer:
    """Create ``arch`` with a fresh ``num_classes`` head, shaped for ``pretrain``'s weights but not holding
    them yet (nothing is downloaded): ``pretrain.load(vit)`` loads them.

    Args:
        arch: timm model name, e.g. ``vit_base_patch16_224`` or ``vit_small_patch14_dinov2``.
        num_classes: Classes of the task (the head is always new).
        img_size: Input resolution; position embeddings are resampled to its grid when loaded.
        pretrain: The weights it will hold: their timm tag (and so timm's pretrained config) and the
            head feature (timm's pooling).
            ``None``: random weights.
        **kwargs: Further timm constructor arguments (depth, embed_dim, patch_size, ...).
    """
    pretrain = pretrain or Pretrain()
    if not timm.is_model(arch):
        raise BackboneError(f"unknown timm model backbone.arch={arch}; see timm.list_models('vit_*')")
    name = pretrain.timm_name(arch)
    if pretrain.tag and name not in timm.list_pretrained(f"{arch}.*"):
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
        raise BackboneError(f"timm has no weights '{name}'. Tags of {arch}: {tags or 'none'}; "
                            f"choose a backbone= that has tag '{pretrain.tag}'")
    if pretrain.head_feature is not None:
        kwargs["global_pool"] = HEAD_FEATURES[pretrain.head_feature].timm_pool
    try:
        model = timm.create_model(name, num_classes=num_classes, img_size=img_size, **kwargs)
    except TypeError as err:  # a non-ViT constructor refusing ViT arguments such as img_size
        raise BackboneError(f"backbone.arch={arch} is not a timm VisionTransformer ({err})") from err
    if not isinstance(model, VisionTransformer):
        raise BackboneError(f"backbone.arch={arch} is a {type(model).__name__}; a timm VisionTransformer is needed")
    return model
