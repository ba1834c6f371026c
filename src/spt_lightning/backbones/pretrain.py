"""Where a backbone's pretrained weights come from (the ``pretrain`` config group), and loading them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import timm
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from ..errors import check_choice
from ..models.heads import HEAD_FEATURES
from .checkpoints import BackboneError, check_format, load_pretrained
from .dinov2_onnx import bundled_backbone

log = logging.getLogger(__name__)

SOURCES = ("none", "timm", "file", "bundled")


@dataclass(frozen=True)
class Pretrain:
    """Pretrained weights of a ViT: checked when made (no download), fetched and loaded by :meth:`load`.

    Args:
        name: The setting's name in results and reports (``sup_in21k``, ``mae``, ...).
        source: ``none`` (random init), ``timm`` (``arch.tag`` from the hub), ``file`` (a local
            checkpoint), or ``bundled`` (the offline DINOv2 ViT-S/14 of the demo).
        tag: timm pretrained tag; also selects timm's pretrained config (mean/std) for a local file.
        file: A local checkpoint; it always wins over the hub (an offline copy of the tag's weights).
        format: Checkpoint layout of ``file``: ``timm``, ``mae`` or ``mocov3``.
        head_feature: What the classification head reads (``models.heads.HEAD_FEATURES``: ``cls_token``,
            ``patch_mean``, ``prompt_patch_mean``, ``prompt_patch_mean_plain_norm``); ``None`` keeps the
            architecture's own pooling.
        mean, std: Normalisation of the weights' inputs; ``None``: timm's pretrained config of the tag.
        strict: Fail on unexpected or missing backbone keys.
        hint: What the file should be, for the error when ``file`` is needed but missing.
    """

    name: str = "random"
    source: str = "none"
    tag: str | None = None
    file: str | None = None
    format: str = "timm"
    head_feature: str | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    strict: bool = True
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise BackboneError(f"unknown pretrain.source '{self.source}'; choose one of {', '.join(SOURCES)}")
        check_format(self.format)
        if self.head_feature is not None:
            check_choice("pretrain.head_feature", self.head_feature, list(HEAD_FEATURES))
        if self.source == "file" and not self.file:
            raise BackboneError(f"pretrain.file is not set: these weights come from a local file"
                                f"{f' ({self.hint})' if self.hint else ''}. Pass pretrain.file=/path/to/checkpoint")

    def timm_name(self, arch: str) -> str:
        """timm's name of these weights for ``arch``: ``arch.tag``, or ``arch`` without a tag."""
        return f"{arch}.{self.tag}" if self.tag else arch

    def normalisation(self, arch: str) -> tuple[list[float], list[float]]:
        """The inputs' mean/std: this setting's, else timm's pretrained config of ``arch.tag`` (read from
        timm's registry: no download, so the data is checked before the weights)."""
        try:
            pretrained_cfg = timm.models.get_pretrained_cfg(self.timm_name(arch)).to_dict()
        except (RuntimeError, AttributeError):  # an arch timm does not know: build_vit names the problem
            pretrained_cfg = {}
        mean = self.mean or pretrained_cfg.get("mean", (0.5, 0.5, 0.5))
        std = self.std or pretrained_cfg.get("std", (0.5, 0.5, 0.5))
        return list(mean), list(std)

    def load(self, vit: VisionTransformer) -> None:
        """Fetch the weights (the hub, the bundled file) and load them into ``vit``, built by ``build_vit``
        with this setting; its head stays fresh. ``source=none`` loads nothing."""
        if self.file or self.source == "bundled":
            load_pretrained(vit, self.file or bundled_backbone(), format=self.format, strict=self.strict)
        elif self.source == "timm":
            self._load_from_hub(vit)

    def _load_from_hub(self, vit: VisionTransformer) -> None:
        name = self.timm_name(vit.pretrained_cfg["architecture"])
        try:
            # What timm.create_model(name, pretrained=True) does after building a VisionTransformer: the
            # tag's file through ViT's filter (position grid resampled, a head of another size dropped).
            timm.models.load_pretrained(vit, num_classes=vit.num_classes, filter_fn=checkpoint_filter_fn,
                                        in_chans=vit.patch_embed.proj.in_channels)
        except Exception as err:
            raise BackboneError(
                f"could not fetch the timm weights '{name}' from the Hugging Face hub ({type(err).__name__}: "
                f"{err}).\nOffline: on a machine with access, run timm.create_model('{name}', pretrained=True) "
                f"(or download the hub repo timm/{name}), copy the weights file here, and pass "
                f"pretrain.file=/path/to/it."
            ) from err
        log.info("Loaded %s from the timm hub: %s parameters", name, f"{sum(p.numel() for p in vit.parameters()):,}")
