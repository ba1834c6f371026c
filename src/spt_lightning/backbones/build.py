"""Build a timm ``VisionTransformer`` and load a pretrained checkpoint into it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from .checkpoints import BackboneError, adapt_state_dict, extract_state_dict, read_npz
from .dinov2_onnx import bundled_backbone

log = logging.getLogger(__name__)

SOURCES = ("none", "timm", "file", "bundled")


def build_vit(
    arch: str,
    num_classes: int,
    img_size: int,
    source: str = "none",
    tag: str | None = None,
    file: str | None = None,
    format: str = "timm",
    global_pool: str | None = None,
    strict: bool = True,
    hint: str | None = None,
    **kwargs: Any,
) -> VisionTransformer:
    """Create ``arch`` with a fresh ``num_classes`` head and load its pretrained weights.

    Args:
        arch: timm model name, e.g. ``vit_base_patch16_224`` or ``vit_small_patch14_dinov2``.
        num_classes: Classes of the task (the head is always new).
        img_size: Input resolution; position embeddings are resampled to its grid.
        source: ``none`` (random init), ``timm`` (``arch.tag`` from the hub), ``file`` (a local
            checkpoint), or ``bundled`` (the offline DINOv2 ViT-S/14 of the demo).
        tag: timm pretrained tag; also selects timm's pretrained config (mean/std) for a local file.
        file: A local checkpoint; it always wins over the hub (an offline copy of the tag's weights).
        format: Checkpoint layout of ``file``: ``timm``, ``mae`` or ``mocov3``.
        global_pool: ``token`` or ``avg``; ``None`` keeps the architecture's default.
        strict: Fail on unexpected or missing backbone keys.
        hint: What the file should be, for the error when ``file`` is needed but missing.
        **kwargs: Further timm constructor arguments (depth, embed_dim, patch_size, ...).
    """
    if source not in SOURCES:
        raise BackboneError(f"unknown pretrain.source '{source}'; choose one of {', '.join(SOURCES)}")
    if not timm.is_model(arch):
        raise BackboneError(f"unknown timm model backbone.arch={arch}; see timm.list_models('vit_*')")
    name = f"{arch}.{tag}" if tag else arch
    if tag and name not in timm.list_pretrained(f"{arch}.*"):
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
        raise BackboneError(f"timm has no weights '{name}'. Tags of {arch}: {tags or 'none'}; "
                            f"choose a backbone= that has tag '{tag}'")
    if global_pool is not None:
        kwargs["global_pool"] = global_pool
    hub = source == "timm" and not file
    try:
        model = timm.create_model(name, pretrained=hub, num_classes=num_classes, img_size=img_size, **kwargs)
    except TypeError as err:  # a non-ViT constructor refusing ViT arguments such as img_size
        raise BackboneError(f"backbone.arch={arch} is not a timm VisionTransformer ({err})") from err
    except Exception as err:
        if not hub:
            raise
        raise BackboneError(
            f"could not fetch the timm weights '{name}' from the Hugging Face hub ({type(err).__name__}: {err}).\n"
            f"Offline: on a machine with access, run timm.create_model('{name}', pretrained=True) (or download "
            f"the hub repo timm/{name}), copy the weights file here, and pass pretrain.file=/path/to/it."
        ) from err
    if not isinstance(model, VisionTransformer):
        raise BackboneError(f"backbone.arch={arch} is a {type(model).__name__}; a timm VisionTransformer is needed")
    if hub:
        log.info("Loaded %s from the timm hub: %s parameters", name, f"{sum(p.numel() for p in model.parameters()):,}")

    if source == "bundled":
        file = str(bundled_backbone())
    if file:
        load_pretrained(model, file, format=format, strict=strict)
    elif source == "file":
        raise BackboneError(f"pretrain.file is not set: these weights come from a local file"
                            f"{f' ({hint})' if hint else ''}. Pass pretrain.file=/path/to/checkpoint")
    return model


def load_pretrained(model: VisionTransformer, file: str | Path, format: str = "timm", strict: bool = True) -> None:
    """Load a checkpoint file into ``model``; one log line with what was loaded and what was not."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise BackboneError(f"checkpoint not found: {path} (set pretrain.file to an existing file)")
    if path.suffix == ".npz":  # Google's JAX release: timm reads it into timm names
        checkpoint, format = read_npz(path, model), "timm"
    else:
        try:
            # Training checkpoints (MAE, MoCo) carry their argparse options beside the weights.
            with torch.serialization.safe_globals([argparse.Namespace]):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors, truncated files, not a torch file at all
            raise BackboneError(f"{path} is not a readable PyTorch checkpoint: {err}") from err
    if not isinstance(checkpoint, dict):
        raise BackboneError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
    state_dict = adapt_state_dict(extract_state_dict(checkpoint, path, format), model)
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} here {tuple(own[k].shape)}" for k, v in state_dict.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        arch = (model.pretrained_cfg or {}).get("architecture", type(model).__name__)
        raise BackboneError(f"{path} does not fit backbone.arch={arch}: {len(wrong)} tensor shapes differ (e.g. "
                            f"{'; '.join(wrong[:3])}). Choose the backbone= these weights were saved from.")
    result = model.load_state_dict(state_dict, strict=False)
    head = {f"head.{n}" for n, _ in model.head.named_parameters()}
    missing = [k for k in result.missing_keys if k not in head]
    loaded = sum(v.numel() for k, v in state_dict.items() if k not in result.unexpected_keys)
    log.info(
        "Loaded %s (%s format): %s parameters; missing %s; unexpected %s",
        path, format, f"{loaded:,}", missing or "none", result.unexpected_keys or "none",
    )
    if strict and (missing or result.unexpected_keys):
        raise BackboneError(
            f"{path} does not fit {type(model).__name__} (missing {missing[:5]}, unexpected "
            f"{result.unexpected_keys[:5]}). Check backbone.arch and pretrain.format, or set pretrain.strict=false."
        )
