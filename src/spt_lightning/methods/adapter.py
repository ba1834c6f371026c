"""Bottleneck adapters (Houlsby et al., ICML 2019, "Parameter-Efficient Transfer Learning for NLP") at the
positions the literature compares, as visinf/adapter_plus names them (adapter_plus/vit_adapter.py L262-303):

- ``mlp``: on the MLP branch's output, inside the residual (``x + f + A(f)``, f = the MLP branch; the
  adapter after the feed-forward layer only, as Pfeiffer et al., EACL 2021, found enough; adapter_plus's
  "intermediate", L282-285).
- ``houlsby``: the same on the attention branch too (L287-291).
- ``post``: on the block's output, with its own skip (``y + A(y)``): Adapter+ (Steitz & Roth, CVPR 2024,
  L262-266).
- ``parallel``: beside the MLP, reading the MLP's input before its norm (``y + f(norm2(y)) + A(y)``):
  AdaptFormer (Chen et al., NeurIPS 2022; ShoufaChen/AdaptFormer models/custom_modules.py L76-93; L293-297 in
  adapter_plus).

``A(h) = s * up(dropout(act(down(h))))``, drop-path on its output. Adapters sit in the blocks through forward
hooks, so every pretrained module keeps its name and call; they are ``block.adapters[<where>]``.
"""

from __future__ import annotations

import math

import torch
from timm.layers import DropPath
from torch import nn

from ..errors import check_choice, check_number
from ..models import PromptedViT
from .base import Method

POSITIONS = ("mlp", "houlsby", "post", "parallel")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}
INITS = ("lora", "houlsby")


class Bottleneck(nn.Module):
    """``scale * up(dropout(act(down(h))))`` with drop-path; ``scale`` a number or, ``"channel"``, a learned
    vector initialised to ones (Adapter+'s channel-wise scaling, vit_adapter.py L46-49).

    Inits: ``lora`` (down Kaiming-uniform, up and both biases zero: the identity at init; AdaptFormer's
    models/adapter.py L41-46) or ``houlsby`` (both weights truncated normal, std 0.01 within 2 std, biases
    zero: near the identity; adapter_plus vit_adapter.py L52-62).
    """

    def __init__(self, dim: int, width: int, scale: float | str, activation: str, init: str, dropout: float,
                 drop_path: float):
        super().__init__()
        self.down = nn.Linear(dim, width)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(width, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.scale = nn.Parameter(torch.ones(dim)) if scale == "channel" else scale
        if init == "lora":
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.up.weight)
        else:
            for layer in (self.down, self.up):
                nn.init.trunc_normal_(layer.weight, std=0.01, a=-0.02, b=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.up(self.dropout(self.act(self.down(h))))) * self.scale


def _add_own(adapter: Bottleneck):
    """Forward hook: ``output + A(output)``."""
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + adapter(output)
    return hook


def _attach_parallel(block: nn.Module, adapter: Bottleneck) -> None:
    """AdaptFormer's form: ``A`` reads the MLP branch's input before ``norm2`` and adds to the branch's
    output (after layer scale). The input is held from ``norm2``'s call to the branch's end."""
    held: list[torch.Tensor] = []

    def keep_input(module: nn.Module, inputs: tuple) -> None:
        held.append(inputs[0])

    def add(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + adapter(held.pop())

    block.norm2.register_forward_pre_hook(keep_input)
    block.ls2.register_forward_hook(add)


class Adapter(Method):
    """Bottleneck adapters in every block; adapters and head train.

    Args:
        name: The method's name.
        bottleneck: The adapter's hidden width (64 in Houlsby et al. and AdaptFormer, 8 in Adapter+ and the
            VPT-era VTAB tables).
        position: ``mlp``, ``houlsby``, ``post`` or ``parallel`` (module docstring).
        scale: Factor on the adapter's output (1 in Houlsby et al.; 0.1 in AdaptFormer), or ``channel``.
        activation: ``gelu`` or ``relu`` (AdaptFormer's).
        init: ``lora`` or ``houlsby`` (:class:`Bottleneck`).
        dropout: Dropout inside the adapter (AdaptFormer's 0.1).
        drop_path: Drop-path on the adapter's output (Adapter+'s 0.1).
    """

    def __init__(self, name: str = "adapter", bottleneck: int = 64, position: str = "mlp",
                 scale: float | str = 1.0, activation: str = "gelu", init: str = "lora", dropout: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__(name)
        self.bottleneck = check_number("method.bottleneck", bottleneck, 1, integer=True)
        self.position = check_choice("method.position", position, POSITIONS)
        self.scale = scale if scale == "channel" else check_number(
            "method.scale", scale, 0, low_open=True, hint=" (or 'channel': a learned scale per channel)")
        self.activation = check_choice("method.activation", activation, list(ACTIVATIONS))
        self.init = check_choice("method.init", init, INITS)
        self.dropout = check_number("method.dropout", dropout, 0, 1)
        self.drop_path = check_number("method.drop_path", drop_path, 0, 1)

    def _new(self, dim: int) -> Bottleneck:
        return Bottleneck(dim, self.bottleneck, self.scale, self.activation, self.init, self.dropout,
                          self.drop_path)

    def attach(self, model: PromptedViT) -> None:
        dim = model.vit.embed_dim
        for block in model.vit.blocks:
            where = {"mlp": ("mlp",), "houlsby": ("attn", "mlp"), "post": ("block",),
                     "parallel": ("parallel",)}[self.position]
            block.adapters = nn.ModuleDict({w: self._new(dim) for w in where})
            if self.position == "parallel":
                _attach_parallel(block, block.adapters["parallel"])
                continue
            for w in where:  # (on the branch after its layer scale, as adapter_plus)
                target = {"attn": block.ls1, "mlp": block.ls2, "block": block}[w]
                target.register_forward_hook(_add_own(block.adapters[w]))
