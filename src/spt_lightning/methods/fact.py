"""FacT (Jie & Deng, AAAI 2023, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer";
github.com/JieShibo/PETL-ViT FacT/): the increments of every block's q, k, v, proj, fc1 and fc2 weights as
one tensor, factorised. ``U`` (D -> r) and ``V`` (r -> D, zero at init) are shared by the whole ViT; each
layer adds ``s * V(dropout(core(U x)))`` to its output, with its own core:

- ``tt`` (tensor-train, fact_tt.py L103-127): a learned r x r matrix per attention projection, r -> 4r for
  fc1 and 4r -> r for fc2 (the 4D-wide MLP seen as 4 slices of D);
- ``tk`` (Tucker, fact_tk.py L105-129): ``C x_3 P``, one r x r x r tensor C and a column of P (r x 12 per
  block) per D x D slice, both Xavier-uniform.

Dropout 0.1 on the core's output (L111/L121). The per-layer arithmetic follows fact_forward_attn and
fact_forward_mlp (fact_tt.py L60-98, fact_tk.py L59-100), reshapes included.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import check_choice, check_number
from ..models import PromptedViT
from .base import Method

FORMS = ("tt", "tk")
ATTN = ("q", "k", "v", "proj")
SLICES_PER_BLOCK = 12  # q, k, v, proj and fc1's / fc2's four D x D slices each: FacT-TK's columns of P


class Factors(nn.Module):
    """The shared factors and every layer's core (``vit.fact``)."""

    def __init__(self, form: str, dim: int, rank: int, depth: int, scale: float, dropout: float):
        super().__init__()
        self.form, self.rank, self.scale = form, rank, scale
        self.u = nn.Linear(dim, rank, bias=False)
        self.v = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.v.weight)
        self.dropout = nn.Dropout(dropout)
        if form == "tt":
            self.cores = nn.ModuleList(nn.ModuleDict(
                {**{n: nn.Linear(rank, rank, bias=False) for n in ATTN},
                 "fc1": nn.Linear(rank, 4 * rank, bias=False), "fc2": nn.Linear(4 * rank, rank, bias=False)})
                for _ in range(depth))
        else:
            self.c = nn.Parameter(nn.init.xavier_uniform_(torch.empty(rank, rank, rank)))
            self.p = nn.Parameter(nn.init.xavier_uniform_(torch.empty(rank, SLICES_PER_BLOCK * depth)))

    def core(self, block: int, name: str, z: torch.Tensor) -> torch.Tensor:
        """``z`` through the core of layer ``name`` of block ``block`` (shapes as the authors' code)."""
        if self.form == "tt":
            return self.cores[block][name](z)
        first = SLICES_PER_BLOCK * block
        if name in ATTN:
            i = first + ATTN.index(name)
            return z @ (self.c @ self.p[:, i:i + 1])[:, :, 0]
        mlp = self.c @ self.p[:, first + 4:first + 12]  # (r, r, 8): fc1's four slices, then fc2's
        part = mlp[:, :, :4] if name == "fc1" else mlp[:, :, 4:]
        matrix = part.reshape(self.rank, 4 * self.rank)
        return z @ (matrix if name == "fc1" else matrix.t())

    def increment(self, block: int, name: str, x: torch.Tensor) -> torch.Tensor:
        """What layer ``name`` adds to its output for its input ``x``."""
        r = self.rank
        if name == "fc1":  # (..., D) -> (..., 4r) -> 4 slices of r -> (..., 4D)
            z = self.dropout(self.core(block, name, self.u(x)))
            return self.v(z.unflatten(-1, (4, r))).flatten(-2) * self.scale
        if name == "fc2":  # (..., 4D) -> 4 slices of D -> (..., 4r) -> (..., D)
            z = self.u(x.unflatten(-1, (4, x.shape[-1] // 4))).flatten(-2)
            return self.v(self.dropout(self.core(block, name, z))) * self.scale
        return self.v(self.dropout(self.core(block, name, self.u(x)))) * self.scale


def _add_increment(factors: Factors, block: int, names: tuple[str, ...]):
    """Forward hook on a linear layer: its output plus the increments of ``names`` (qkv: q, k and v, each a
    third of the output, from the same input)."""
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + torch.cat([factors.increment(block, n, inputs[0]) for n in names], dim=-1)
    return hook


class FacT(Method):
    """FacT on every block's attention and MLP weights; the factors and the head train.

    Args:
        name: The method's name.
        form: ``tt`` or ``tk``.
        rank: r (the authors tune it per task: 4-16 for TT, 16-32 for TK; recipe/fact.yaml).
        scale: s (per task as well, 0.01-100).
        dropout: Dropout on each core's output (0.1).
    """

    def __init__(self, name: str = "fact_tt", form: str = "tt", rank: int = 8, scale: float = 1.0,
                 dropout: float = 0.1):
        super().__init__(name)
        self.form = check_choice("method.form", form, FORMS)
        self.rank = check_number("method.rank", rank, 1, integer=True)
        self.scale = check_number("method.scale", scale, 0, low_open=True)
        self.dropout = check_number("method.dropout", dropout, 0, 1)

    def attach(self, model: PromptedViT) -> None:
        vit = model.vit
        vit.fact = Factors(self.form, vit.embed_dim, self.rank, len(vit.blocks), self.scale, self.dropout)
        for i, block in enumerate(vit.blocks):
            for layer, names in (("attn.qkv", ("q", "k", "v")), ("attn.proj", ("proj",)), ("mlp.fc1", ("fc1",)),
                                 ("mlp.fc2", ("fc2",))):
                block.get_submodule(layer).register_forward_hook(_add_increment(vit.fact, i, names))

