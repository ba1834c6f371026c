"""Bottleneck adapters after each block's MLP (Houlsby et al., ICML 2019, "Parameter-Efficient Transfer
Learning for NLP": the adapter module, up-projection initialised near zero; placed after the feed-forward
layer only, as Pfeiffer et al., EACL 2021, "AdapterFusion", found enough)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import check_number
from ..models import PromptedViT
from .base import Method


class BottleneckAdapter(nn.Module):
    """``h + scale * up(gelu(down(h)))`` after a frozen module: the identity at init (``up`` is zero)."""

    def __init__(self, inner: nn.Module, dim: int, bottleneck: int, scale: float):
        super().__init__()
        self.inner = inner
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.scale = scale
        # (LoRA's init, as AdaptFormer's code: down Kaiming-uniform, up and both biases zero)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inner(x)
        return h + self.scale * self.up(nn.functional.gelu(self.down(h)))


class Adapter(Method):
    """A bottleneck adapter after the MLP of every block; adapters and head train.

    Args:
        name: The method's name.
        bottleneck: The adapter's hidden width (Houlsby et al. and AdaptFormer use 64 for ViT-B).
        scale: Factor on the adapter's output (1 in Houlsby et al.; AdaptFormer's parallel form uses 0.1).
    """

    def __init__(self, name: str = "adapter", bottleneck: int = 64, scale: float = 1.0):
        super().__init__(name)
        self.bottleneck = check_number("method.bottleneck", bottleneck, 1, integer=True)
        self.scale = check_number("method.scale", scale, 0, low_open=True)

    def attach(self, model: PromptedViT) -> None:
        for block in model.vit.blocks:
            block.mlp = BottleneckAdapter(block.mlp, model.vit.embed_dim, self.bottleneck, self.scale)
