"""Build a timm ViT by architecture and load pretrained weights into it. No data, no training loop."""

from .build import build_vit
from .checkpoints import BackboneError, load_pretrained
from .pretrain import SOURCES, Pretrain

__all__ = ["SOURCES", "BackboneError", "Pretrain", "build_vit", "load_pretrained"]
