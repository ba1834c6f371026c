"""Build a timm ViT by architecture and load pretrained weights into it. No data, no training loop."""

from .build import build_vit, load_pretrained
from .checkpoints import BackboneError

__all__ = ["BackboneError", "build_vit", "load_pretrained"]
