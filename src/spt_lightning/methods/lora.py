"""LoRA (Hu et al., ICLR 2022): low-rank updates ``B A`` beside frozen linear layers (``B = 0`` at init, so the
model starts as the frozen one).

LoRA's own form, and NOAH's whose ViT rows the published LoRA numbers are, adapts W_q and W_v: two rank-r
updates per block. timm fuses q, k and v into one ``attn.qkv`` layer, so the targets ``q``, ``k``, ``v`` are
its slices: an update each, added to that third of ``qkv``'s output by a forward hook (the layer keeps its
name and call; VIPAMIN's init reads ``attn.qkv``). Any other target names whole linear layers (``qkv``,
``proj``, ``fc1``, ``fc2``), adapted through Hugging Face ``peft``; ``targets: [qkv]`` is the fused form (one
update on the whole projection: A shared by q, k and v, k adapted too), with the same parameter count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError, check_number
from ..models import PromptedViT
from .base import Method

SLICES = ("q", "k", "v")  # thirds of timm's fused attn.qkv output


class LowRankUpdate(nn.Module):
    """``scale * B(A(dropout(x)))``, ``A`` Kaiming-uniform and ``B`` zero at init (peft's LoRA init)."""

    def __init__(self, dim_in: int, dim_out: int, rank: int, scale: float, dropout: float):
        super().__init__()
        self.down = nn.Linear(dim_in, rank, bias=False)
        self.up = nn.Linear(rank, dim_out, bias=False)
        self.scale = scale
        self.dropout = nn.Dropout(dropout)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(self.dropout(x))) * self.scale


def _add_to_slices(updates: nn.ModuleDict):
    """A forward hook on ``attn.qkv``: each update in ``updates`` added to its third of the output."""
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        parts = list(output.chunk(3, dim=-1))
        for i, name in enumerate(SLICES):
            if name in updates:
                parts[i] = parts[i] + updates[name](inputs[0])
        return torch.cat(parts, dim=-1)
    return hook


class LoRA(Method):
    """LoRA on the ViT's ``targets``; the LoRA tensors and the head train.

    Args:
        name: The method's name.
        rank: r, the rank of each update (8 is the ViT default of PETL_Vision and NOAH's LoRA rows).
        alpha: The update is scaled by ``alpha / rank``.
        dropout: Dropout on the LoRA branch's input.
        targets: ``q``, ``k``, ``v`` (slices of timm's fused ``attn.qkv``; default ``[q, v]``, LoRA's form) and/or
            names of linear layers for peft (``qkv``: the fused form; ``proj``, ``fc1``, ``fc2``).
    """

    def __init__(self, name: str = "lora", rank: int = 8, alpha: float = 8.0, dropout: float = 0.0,
                 targets: tuple[str, ...] | list[str] = ("q", "v")):
        super().__init__(name)
        self.rank = check_number("method.rank", rank, 1, integer=True)
        self.alpha = check_number("method.alpha", alpha, 0, low_open=True)
        self.dropout = check_number("method.dropout", dropout, 0, 1)
        self.targets = list(targets)
        if not self.targets:
            raise ConfigError("method.targets=[]: name at least one target (q, k, v, or a linear layer)", "method.targets")

    def attach(self, model: PromptedViT) -> None:
        slices = [t for t in self.targets if t in SLICES]
        layers = [t for t in self.targets if t not in SLICES]
        if layers:
            self._attach_peft(model, layers)
        for block in model.vit.blocks if slices else ():
            qkv = block.attn.qkv
            dim = qkv.in_features
            block.attn.lora = nn.ModuleDict({s: LowRankUpdate(dim, qkv.out_features // 3, self.rank,
                                                              self.alpha / self.rank, self.dropout) for s in slices})
            qkv.register_forward_hook(_add_to_slices(block.attn.lora))

    def _attach_peft(self, model: PromptedViT, layers: list[str]) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as err:
            raise ConfigError(f"method={self.name} with targets {layers} needs Hugging Face peft ({err}); pip install "
                              f"'spt-lightning[peft]' (targets q, k, v need nothing more)", "method") from None
        config = LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=layers, bias="none")
        try:
            inject_adapter_in_model(config, model.vit)
        except ValueError as err:  # no module of that name
            raise ConfigError(f"method.targets={self.targets}: {err}", "method.targets") from None
