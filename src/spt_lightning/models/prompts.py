"""Learnable prompt tokens, kept apart from the ViT that consumes them."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import check_number

# More prompt tokens per layer than any ViT has patch tokens (ViT-H/14 at 518 px: 1,369) is a typo, refused
# before the tensor is allocated.
MAX_LENGTH = 10_000


def check_shape(values: torch.Tensor, prompts: torch.Tensor) -> None:
    if tuple(values.shape) != tuple(prompts.shape):
        raise ValueError(f"initial prompt values of shape {tuple(values.shape)} for prompts of shape "
                         f"{tuple(prompts.shape)} [layers, P, dim]")


class Prompts(nn.Module):
    """``num_layers`` sets of ``length`` prompt tokens of width ``dim``.

    Shallow prompting uses one set (layer 0, at the input); deep prompting one set per block.
    The values live in a single parameter ``embeddings[layer, token, dim]`` so that an initialiser
    (xavier, or SPT's prototypes) writes them in place with one ``copy_``.

    Args:
        num_layers: Number of prompt sets (1 for shallow, depth for deep).
        length: Prompt tokens per set (P).
        dim: Token width of the ViT.
        dropout: Dropout applied to the prompts in training (VPT uses 0.0 or 0.1).
        patch_fan_in: ``in_chans * patch_h * patch_w``; used by the VPT xavier init.
    """

    def __init__(self, num_layers: int, length: int, dim: int, dropout: float = 0.0, patch_fan_in: int = 3 * 16 * 16):
        super().__init__()
        check_number("prompt.length", length, 1, MAX_LENGTH, integer=True, high_open=False,
                     hint=": a prompted method needs at least one prompt token per layer. Set prompt.length to a "
                          "positive number (the paper uses 1-200), or to null for no prompts (as method=linear has it).")
        check_number("prompt.dropout", dropout, 0, 1)
        self.patch_fan_in = patch_fan_in
        self.embeddings = nn.Parameter(torch.empty(num_layers, length, dim))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    @property
    def num_layers(self) -> int:
        return self.embeddings.shape[0]

    @property
    def length(self) -> int:
        return self.embeddings.shape[1]

    def reset_parameters(self) -> None:
        """VPT's data-free init: uniform(-v, v), v = sqrt(6 / (fan_in of a patch + dim))."""
        bound = math.sqrt(6.0 / (self.patch_fan_in + self.embeddings.shape[-1]))
        nn.init.uniform_(self.embeddings, -bound, bound)

    def assign(self, values: torch.Tensor) -> None:
        """Write initial ``values [layers, P, D]`` (SPT's prototypes) into the prompts, in place; values of
        another shape are an error (``copy_`` would broadcast them)."""
        check_shape(values, self.embeddings)
        with torch.no_grad():
            self.embeddings.copy_(values.to(self.embeddings))

    def forward(self, layer: int, batch_size: int) -> torch.Tensor:
        """Prompts of one layer, expanded to ``[batch_size, length, dim]``."""
        return self.dropout(self.embeddings[layer].expand(batch_size, -1, -1))


class ExtraTokens(nn.Module):
    """Base of the learnable tokens a method adds inside the blocks (E²VPT's key-value prompts). They are
    part of the prompted model only: :meth:`PromptedViT.block_inputs` turns them off (``enabled``), so
    prototypes are computed on the frozen backbone's own tokens."""

    enabled = True
