"""K prompt-tuning runs in one forward pass: a study's grid points of one task (the same frozen backbone,
the same images in the same order, other learning rates or weight decays) trained side by side.

The batch of B images is repeated K times; replica k's rows see prompt set k and are classified by head k,
so the backbone runs once on K x B rows instead of K times on B rows, which fills a GPU that one batch of
32 leaves idle. Each replica's prompts and head are tensors of their own, so each gets its own optimizer
group (lr, weight decay, schedule) and the sum of the replicas' losses gives every replica exactly the
gradient it would get alone. Training such a pack (per-point selection, checkpoints and results) is
``spt_lightning.packed_train``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .prompted_vit import PromptedViT
from .prompts import check_shape


class PackedPrompts(nn.Module):
    """K prompt sets, each a parameter ``[layers, P, D]`` of its own; layer i of a ``K x B`` batch gets set k
    on rows ``k*B .. (k+1)*B``."""

    def __init__(self, sets: list[torch.Tensor], dropout: float = 0.0, patch_fan_in: int = 3 * 16 * 16):
        super().__init__()
        self.sets = nn.ParameterList([nn.Parameter(s.detach().clone()) for s in sets])
        self.dropout = nn.Dropout(dropout)
        self.patch_fan_in = patch_fan_in

    @property
    def num_layers(self) -> int:
        return self.sets[0].shape[0]

    @property
    def length(self) -> int:
        return self.sets[0].shape[1]

    def assign(self, values: torch.Tensor) -> None:
        """Write the same initial ``values [layers, P, D]`` (SPT's prototypes) into every set, in place."""
        with torch.no_grad():
            for s in self.sets:
                check_shape(values, s)
                s.copy_(values.to(s))

    def forward(self, layer: int, batch_size: int) -> torch.Tensor:
        k = len(self.sets)
        per = batch_size // k
        stacked = torch.stack([s[layer] for s in self.sets])  # [K, P, D]
        return self.dropout(stacked[:, None].expand(k, per, -1, -1).reshape(batch_size, *stacked.shape[1:]))


class PackedHead(nn.Module):
    """K linear heads; rows ``k*B .. (k+1)*B`` of the features go through head k."""

    def __init__(self, heads: list[nn.Linear]):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(h.weight.detach().clone()) for h in heads])
        self.biases = nn.ParameterList([nn.Parameter(h.bias.detach().clone()) for h in heads])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.weights)
        rows = x.reshape(k, -1, x.shape[-1])  # [K, B, D]
        weight, bias = torch.stack(list(self.weights)), torch.stack(list(self.biases))  # [K, C, D], [K, C]
        return torch.baddbmm(bias[:, None], rows, weight.transpose(1, 2)).reshape(-1, weight.shape[1])


class PackedViT(PromptedViT):
    """The K models of ``models`` (prompted ViTs sharing one architecture and frozen weights) as one: their
    prompts and heads stacked, the backbone of the first. ``forward`` gives logits ``[K, B, classes]``."""

    def __init__(self, models: list[PromptedViT]):
        first = models[0]
        vit = copy.copy(first.vit)  # the same blocks and weights; its own module table, so the head is its own
        vit._modules = dict(first.vit._modules)
        super().__init__(vit, None, deep=first.deep, head_feature=first.head_feature and first.head_feature.name)
        self.vit.head = PackedHead([m.vit.get_classifier() for m in models])
        self.prompts = PackedPrompts([m.prompts.embeddings for m in models], first.prompts.dropout.p,
                                     first.prompts.patch_fan_in)
        self.replicas = len(models)
        self.freeze_backbone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x.repeat(self.replicas, *([1] * (x.dim() - 1))))
        return logits.reshape(self.replicas, x.shape[0], -1)

    def replica_parameters(self, k: int) -> dict[str, nn.Parameter]:
        """Replica k's trainable tensors, named as in an unpacked model."""
        return {"prompts.embeddings": self.prompts.sets[k], "vit.head.weight": self.vit.head.weights[k],
                "vit.head.bias": self.vit.head.biases[k]}


def replica_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[K]``: each replica's mean cross-entropy. Their sum gives replica k exactly its own run's gradient."""
    k, b, c = logits.shape
    return F.cross_entropy(logits.reshape(k * b, c), y.repeat(k), reduction="none").view(k, b).mean(1)


def replica_groups(packed: PackedViT, k: int, groups: list[dict[str, Any]], model: PromptedViT,
                   suffix: str) -> list[dict[str, Any]]:
    """Replica k's optimizer groups: an unpacked run's (``groups``, built over ``model``'s tensors by
    ``PromptTuningModule.param_groups``, so one rule decides lr and weight decay) with replica k's tensors
    in place of ``model``'s and ``suffix`` added to each group's name."""
    names = {id(p): n for n, p in model.named_parameters()}
    own = packed.replica_parameters(k)
    return [{**g, "params": [own[names[id(p)]] for p in g["params"]], "name": f"{g['name']}{suffix}"} for g in groups]
