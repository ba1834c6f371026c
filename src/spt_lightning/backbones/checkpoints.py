"""Checkpoint formats → timm state dicts: what a pretraining release saves, and what a timm ViT expects.

Formats (``pretrain.format``):
  ``timm``    a timm state dict, possibly wrapped (``state_dict``/``model``) or DDP-prefixed (``module.``);
  ``mae``     MAE's ``{"model": ...}`` (``mae_pretrain_vit_base.pth``): decoder and mask token dropped;
  ``mocov3``  MoCo v3's self-supervised ``vit-b-300ep.pth.tar``: ``module.base_encoder.*`` taken, the
              momentum encoder, predictor and projection head dropped; or its linear-probe
              ``linear-vit-b-300ep.pth.tar`` (the file VPT's, E2VPT's and SPT's READMEs link): ``module.*``
              taken, the trained ``head`` dropped. Its backbone is the self-supervised encoder's: MoCo v3's
              ``main_lincls.py`` trains ``head`` only (L163-166) and asserts before saving that every other
              tensor still equals the pretrained encoder's (``sanity_check``, L434-455).
  ``clip``    a CLIP model's image tower: OpenAI's layout (``visual.conv1``, ``visual.transformer.resblocks``;
              open_clip's ``open_clip_pytorch_model.bin`` of the openai weights) or open_clip's timm trunk
              (``visual.trunk.*``), converted by timm's own ViT filter; the text tower and the image
              projection (CLIP's joint-space head) dropped. A file already in timm's layout is read as ``timm``.
A ``.npz`` file is Google's original JAX release (VPT's ``imagenet21k_ViT-B_16.npz``), whatever the format.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from ..console import CONSOLE
from ..errors import SptError

log = logging.getLogger(__name__)

FORMATS = ("timm", "mae", "mocov3", "clip")
MOCO_PREFIX = "module.base_encoder."
# Parts of pretraining models that a frozen backbone never uses.
_PRETRAINING_ONLY = ("head.", "decoder", "mask_token", "momentum_encoder.", "predictor.")


class BackboneError(SptError, RuntimeError):
    """A backbone or its checkpoint cannot be built or loaded as asked; the message says how to fix it."""


def _unwrap(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            return _unwrap(checkpoint[key])
    return checkpoint


def _strip(state_dict: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise BackboneError(f"unknown pretrain.format '{fmt}'; choose one of {', '.join(FORMATS)}")


def extract_state_dict(checkpoint: dict[str, Any], path: Path, fmt: str = "timm",
                       model: VisionTransformer | None = None) -> dict[str, torch.Tensor]:
    """The backbone's tensors of a checkpoint file in format ``fmt``, with timm names (``clip`` needs the
    ``model`` they are for)."""
    check_format(fmt)
    state_dict = _unwrap(checkpoint)
    if fmt == "clip" and any(k.startswith("visual.") for k in state_dict):
        # OpenAI's or open_clip's layout -> timm's (a grid resampled as adapt_state_dict resamples)
        state_dict = checkpoint_filter_fn(state_dict, model, interpolation="bicubic", antialias=False)
    elif fmt == "mocov3":
        state_dict = _mocov3_encoder(state_dict, path)
    elif state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = _strip(state_dict, "module.")  # saved from a DDP-wrapped model
    return {k: v for k, v in state_dict.items() if not k.startswith(_PRETRAINING_ONLY)}


def _mocov3_encoder(state_dict: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """The ViT encoder of either MoCo v3 release (see the module docstring), timm-named."""
    if any(k.startswith(MOCO_PREFIX) for k in state_dict):  # vit-b-300ep.pth.tar
        return _strip(state_dict, MOCO_PREFIX)
    plain = _strip(state_dict, "module.") if all(k.startswith("module.") for k in state_dict) else state_dict
    if {"head.weight", "cls_token", "pos_embed"} <= plain.keys() and any(k.startswith("blocks.") for k in plain):
        log.info("%s: MoCo v3's linear-probe checkpoint; its encoder is taken (main_lincls.py trains only the head "
                 "and its sanity_check asserts the rest equals the pretrained encoder) and its trained head "
                 "dropped", path, extra=CONSOLE)
        return {k: v for k, v in plain.items() if not k.startswith("head.")}
    raise BackboneError(f"{path} is neither MoCo v3 checkpoint: expected '{MOCO_PREFIX}*' keys (the self-supervised "
                        f"vit-b-300ep.pth.tar) or 'module.' keys of a ViT with its linear head (linear-vit-b-300ep."
                        f"pth.tar); found {sorted(state_dict)[:3]}. Set pretrain.file to one of them.")


def adapt_state_dict(state_dict: dict[str, torch.Tensor], model: VisionTransformer) -> dict[str, torch.Tensor]:
    """Fit a backbone state dict to ``model``: position grid, and the final norm under average pooling."""
    out = dict(state_dict)
    pos = out.get("pos_embed")
    if pos is not None and model.pos_embed is not None and pos.shape != model.pos_embed.shape:
        # NOTE: bicubic without antialias, as DINOv2 and the original ViT code interpolate; with it,
        # features of the bundled DINOv2 at 224 px drift by 0.37 from the reference, without 1e-5.
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        out["pos_embed"] = resample_abs_pos_embed(
            pos, new_size=model.patch_embed.grid_size, num_prefix_tokens=prefix,
            interpolation="bicubic", antialias=False, verbose=False,
        )
    if isinstance(model.norm, torch.nn.Identity) and "norm.weight" in out and "fc_norm.weight" not in out:
        # Average pooling (timm: fc_norm after the pool, no norm before it): the pretrained final
        # norm is the LayerNorm right before the head in both layouts, so it moves over.
        out["fc_norm.weight"], out["fc_norm.bias"] = out.pop("norm.weight"), out.pop("norm.bias")
    return out


def read_npz(path: Path, model: VisionTransformer) -> dict[str, torch.Tensor]:
    """Google's original JAX ``.npz`` ViT release as a timm state dict, at the file's own position grid.

    timm's reader maps the names; it fills a copy of ``model`` resized to the file's grid, so that the
    grid is then resampled as every other checkpoint's is (:func:`adapt_state_dict`).
    """
    import numpy as np

    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files if k.endswith(("pos_embedding", "encoder_norm/scale",
                                                                   "encoder_norm/bias"))}
    except Exception as err:  # not a zip, truncated
        raise BackboneError(f"{path} is not a readable .npz file: {err}") from err
    pos = next((v for k, v in arrays.items() if k.endswith("pos_embedding")), None)
    if pos is None:
        raise BackboneError(f"{path} has no position embedding: it is not a ViT release from Google's JAX code")
    grid = math.isqrt(pos.shape[-2] - (0 if model.no_embed_class else model.num_prefix_tokens))
    native = copy.deepcopy(model)
    native.set_input_size(img_size=grid * model.patch_embed.patch_size[0])
    try:
        native.load_pretrained(str(path))
    except Exception as err:  # a missing name or a shape that does not fit
        raise BackboneError(f"{path} does not fit {type(model).__name__} ({type(err).__name__}: {err}); "
                            f"check backbone.arch") from err
    state_dict = native.state_dict()
    if isinstance(model.norm, torch.nn.Identity):  # average pooling: timm leaves fc_norm unread
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc_norm.")}
        for name, key in (("scale", "weight"), ("bias", "bias")):
            state_dict[f"norm.{key}"] = torch.from_numpy(next(v for k, v in arrays.items()
                                                              if k.endswith(f"encoder_norm/{name}")))
    return state_dict


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
    state_dict = adapt_state_dict(extract_state_dict(checkpoint, path, format, model), model)
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
