"""Build a timm ViT by architecture and load pretrained weights into it. No data, no training loop."""

from .build import BackboneError, build_vit, load_pretrained

__all__ = ["BackboneError", "build_vit", "load_pretrained"]
