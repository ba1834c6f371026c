"""Build a timm ``VisionTransformer`` and load a pretrained checkpoint into it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

log = logging.getLogger(__name__)


class BackboneError(RuntimeError):
    """A backbone or its checkpoint cannot be built or loaded as asked."""


def build_vit(
    arch: str,
    num_classes: int,
    img_size: int,
    source: str = "none",
    tag: str | None = None,
    file: str | None = None,
    global_pool: str | None = None,
    strict: bool = True,
    **kwargs: Any,
) -> VisionTransformer:
    """Create ``arch`` with a fresh ``num_classes`` head and load its pretrained weights.

    Args:
        arch: timm model name, e.g. ``vit_base_patch16_224`` or ``vit_small_patch14_dinov2``.
        num_classes: Classes of the task (the head is always new).
        img_size: Input resolution; position embeddings are resampled to its grid.
        source: ``none`` (random init), ``file`` (a local state dict), ``bundled`` (the offline
            DINOv2 ViT-S/14 of the demo), or ``timm`` (``arch.tag`` from the hub).
        tag: timm pretrained tag for ``source=timm``.
        file: Checkpoint path for ``source=file``.
        global_pool: ``token`` or ``avg``; ``None`` keeps the architecture's default.
        strict: Fail on unexpected or missing backbone keys.
        **kwargs: Further timm constructor arguments (depth, embed_dim, patch_size, ...).
    """
    if global_pool is not None:
        kwargs["global_pool"] = global_pool
    if not timm.is_model(arch):
        raise BackboneError(f"unknown timm model backbone.arch={arch}; see timm.list_models('vit_*')")
    pretrained = source == "timm"
    name = f"{arch}.{tag}" if pretrained and tag else arch
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes, img_size=img_size, **kwargs)
    except TypeError as err:  # a non-ViT constructor refusing ViT arguments such as img_size
        raise BackboneError(f"backbone.arch={arch} is not a timm VisionTransformer ({err})") from err
    except RuntimeError as err:
        if pretrained:
            raise BackboneError(
                f"Could not load timm weights '{name}' ({err}). Without access to the Hugging Face hub, "
                f"download them elsewhere and pass pretrain.source=file pretrain.file=/path/to/weights.pth"
            ) from err
        raise
    if not isinstance(model, VisionTransformer):
        raise BackboneError(f"backbone.arch={arch} is a {type(model).__name__}; a timm VisionTransformer is needed")

    if source == "bundled":
        from ..assets import bundled_backbone

        file, source = str(bundled_backbone()), "file"
    if source == "file":
        if not file:
            raise BackboneError("pretrain.source=file needs pretrain.file=/path/to/checkpoint")
        load_pretrained(model, file, strict=strict)
    elif source not in ("none", "timm"):
        raise BackboneError(f"unknown pretrain.source '{source}': use none, file, bundled or timm")
    return model


def _unwrap(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            return _unwrap(checkpoint[key])
    return checkpoint


def adapt_state_dict(state_dict: dict[str, torch.Tensor], model: VisionTransformer) -> dict[str, torch.Tensor]:
    """Drop the pretraining head and resample position embeddings to the model's grid."""
    head = {f"head.{n}" for n, _ in model.head.named_parameters()}
    out = {k: v for k, v in state_dict.items() if k not in head}
    pos = out.get("pos_embed")
    if pos is not None and model.pos_embed is not None and pos.shape != model.pos_embed.shape:
        # NOTE: bicubic without antialias, as DINOv2 and the original ViT code interpolate; with it,
        # features of the bundled DINOv2 at 224 px drift by 0.37 from the reference, without 1e-5.
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        out["pos_embed"] = resample_abs_pos_embed(
            pos, new_size=model.patch_embed.grid_size, num_prefix_tokens=prefix,
            interpolation="bicubic", antialias=False, verbose=False,
        )
    return out


def load_pretrained(model: VisionTransformer, file: str | Path, strict: bool = True) -> None:
    """Load a timm-format checkpoint into ``model``; one log line with what was loaded and what was not."""
    path = Path(file)
    if not path.is_file():
        raise BackboneError(f"checkpoint not found: {path} (set pretrain.file to an existing file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated files, not a torch file at all
        raise BackboneError(f"{path} is not a readable PyTorch checkpoint: {err}") from err
    state_dict = adapt_state_dict(_unwrap(checkpoint), model)
    result = model.load_state_dict(state_dict, strict=False)
    head = {f"head.{n}" for n, _ in model.head.named_parameters()}
    missing = [k for k in result.missing_keys if k not in head]
    loaded = sum(v.numel() for k, v in state_dict.items() if k not in result.unexpected_keys)
    log.info(
        "Loaded %s: %s parameters; missing %s; unexpected %s",
        path, f"{loaded:,}", missing or "none", result.unexpected_keys or "none",
    )
    if strict and (missing or result.unexpected_keys):
        raise BackboneError(
            f"{path} does not fit {type(model).__name__} (missing {missing[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}). Check backbone.arch, or set pretrain.strict=false to accept this."
        )
