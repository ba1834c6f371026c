"""BitFit (Ben Zaken et al., ACL 2022): only the bias terms of the backbone (and the head) train."""

from __future__ import annotations

import torch

from ..models import PromptedViT
from .base import Method


class BitFit(Method):
    """Every bias of the backbone trains (attention qkv/proj, MLP, norms' ``bias``); weights stay frozen.

    Args:
        name: The method's name.
        norms: Train the LayerNorm biases too (BitFit's ViT ports, e.g. PETL_Vision, do).
    """

    def __init__(self, name: str = "bitfit", norms: bool = True):
        super().__init__(name)
        self.norms = norms

    def attach(self, model: PromptedViT) -> None:
        for module in model.vit.modules():
            bias = getattr(module, "bias", None)
            is_norm = "norm" in type(module).__name__.lower()
            if isinstance(bias, torch.nn.Parameter) and (self.norms or not is_norm):
                bias.requires_grad_(True)
