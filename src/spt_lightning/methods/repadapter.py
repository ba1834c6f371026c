"""RepAdapter (Luo et al., 2023, "Towards Efficient Visual Adaption via Structural Re-parameterization";
github.com/luogen1996/RepAdapter repadapter.py): a linear adapter ``h + s * B(dropout(A h))`` on the input of
each block's attention (after norm1) and MLP (after norm2) (``forward_vit_block_adapter``, L21-24). ``A`` is
dense (width 8, Xavier-uniform, bias zero), ``B`` a grouped projection back (2 groups, zero), dropout 0.1
(class RepAdapter, L147-169). With no non-linearity the adapter folds into the following qkv / fc1
(``set_RepWeight``, L270-300): :meth:`RepAdapter.merge` does it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, check_number
from ..models import PromptedViT
from .base import Method

# the layer whose output the adapter changes -> the linear layer that reads it (where it folds)
PLACES = {"norm1": "attn.qkv", "norm2": "mlp.fc1"}


class LinearAdapter(nn.Module):
    """``h + scale * B(dropout(A h))``; ``B`` grouped: group k maps the k-th slice of the hidden width to the
    k-th slice of the channels (the authors' ``Conv1d(..., groups)``), kept as its (D, width / groups) weight."""

    def __init__(self, dim: int, width: int, groups: int, scale: float, dropout: float):
        super().__init__()
        self.down = nn.Linear(dim, width)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        self.up_weight = nn.Parameter(torch.zeros(dim, width // groups))
        self.up_bias = nn.Parameter(torch.zeros(dim))
        self.groups, self.scale = groups, scale
        self.dropout = nn.Dropout(dropout)

    def up_dense(self) -> torch.Tensor:
        """``B`` as a dense (D, width) matrix: block-diagonal in its groups."""
        return torch.block_diag(*self.up_weight.view(self.groups, -1, self.up_weight.shape[1]))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.scale * F.linear(self.dropout(self.down(h)), self.up_dense(), self.up_bias)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M, c)`` with ``adapter(h) = h M^T + c`` (in eval mode)."""
        up = self.up_dense()
        eye = torch.eye(up.shape[0], dtype=up.dtype, device=up.device)
        return eye + self.scale * up @ self.down.weight, self.scale * (up @ self.down.bias + self.up_bias)


def _adapt(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return module.repadapter(output)


class RepAdapter(Method):
    """RepAdapter before every block's attention and MLP; adapters and head train.

    Args:
        name: The method's name.
        width: The adapter's hidden width (the authors' ``dim``, 8).
        groups: Groups of the up-projection (2); must divide ``width`` and the ViT's width.
        scale: ``s`` (the authors tune it per task: recipe/repadapter.yaml).
        dropout: Dropout between the projections (0.1).
    """

    def __init__(self, name: str = "repadapter", width: int = 8, groups: int = 2, scale: float = 1.0,
                 dropout: float = 0.1):
        super().__init__(name)
        self.width = check_number("method.width", width, 1, integer=True)
        self.groups = check_number("method.groups", groups, 1, integer=True)
        if width % groups:
            raise ConfigError(f"method.groups={groups} does not divide method.width={width}: choose a divisor "
                              f"(the authors' 2 for width 8)", "method.groups")
        self.scale = check_number("method.scale", scale, 0, low_open=True)
        self.dropout = check_number("method.dropout", dropout, 0, 1)

    def attach(self, model: PromptedViT) -> None:
        dim = model.vit.embed_dim
        if dim % self.groups:
            raise ConfigError(f"method.groups={self.groups} does not divide the ViT's width {dim}", "method.groups")
        for block in model.vit.blocks:
            for place in PLACES:
                norm = block.get_submodule(place)
                norm.repadapter = LinearAdapter(dim, self.width, self.groups, self.scale, self.dropout)
                norm.repadapter_hook = norm.register_forward_hook(_adapt)

    @torch.no_grad()
    def merge(self, model: PromptedViT) -> None:
        for block in model.vit.blocks:
            for place, reader in PLACES.items():
                norm, linear = block.get_submodule(place), block.get_submodule(reader)
                if not hasattr(norm, "repadapter_hook"):
                    raise ConfigError(f"RepAdapter.merge: block {place} holds no adapter (merged already?)", "method")
                matrix, offset = norm.repadapter.affine()
                if linear.bias is None:
                    linear.bias = nn.Parameter(torch.zeros(linear.out_features), requires_grad=False)
                linear.bias.add_(linear.weight @ offset)
                linear.weight.copy_(linear.weight @ matrix)
                norm.repadapter_hook.remove()
                del norm.repadapter, norm.repadapter_hook
