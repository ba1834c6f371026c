"""SSF (Lian et al., NeurIPS 2022, "Scaling & Shifting Your Features"): a learned per-channel scale and shift
after each operation of the frozen ViT, as the authors' models/vision_transformer.py places them
(github.com/dongzelian/SSF): after the patch projection (L366-367), each block's norm1 and norm2 (L253-255),
attn.qkv and attn.proj (L198-211), mlp.fc1 and mlp.fc2 (L159-166), and the final norm (L531-533); scale
initialised N(1, 0.02), shift N(0, 0.02) (L378-385).

Each scale-shift follows a linear map, so it folds into that map's weights: :meth:`SSF.merge` writes them
into the frozen layers and removes the hooks (the authors' re-parameterisation for inference).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..models import PromptedViT
from .base import Method

BLOCK_TARGETS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")


def _scale_shift(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: ``output * scale + shift`` along the channel axis (1 for a conv's map, else the last)."""
    scale, shift = module.ssf_scale, module.ssf_shift
    if isinstance(module, nn.Conv2d):
        return output * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
    return output * scale + shift


def _targets(vit: nn.Module) -> list[nn.Module]:
    final = vit.norm if isinstance(vit.norm, nn.LayerNorm) else vit.fc_norm
    blocks = [block.get_submodule(t) for block in vit.blocks for t in BLOCK_TARGETS]
    return [vit.patch_embed.proj, *blocks, final]


class SSF(Method):
    """A scale and a shift after each of the frozen ViT's operations; they and the head train.

    Args:
        name: The method's name.
    """

    def __init__(self, name: str = "ssf"):
        super().__init__(name)

    def attach(self, model: PromptedViT) -> None:
        for module in _targets(model.vit):
            channels = module.weight.shape[0]
            module.ssf_scale = nn.Parameter(torch.empty(channels).normal_(1.0, 0.02))
            module.ssf_shift = nn.Parameter(torch.empty(channels).normal_(0.0, 0.02))
            module.ssf_hook = module.register_forward_hook(_scale_shift)

    @torch.no_grad()
    def merge(self, model: PromptedViT) -> None:
        for module in _targets(model.vit):
            if not hasattr(module, "ssf_hook"):
                raise ConfigError(f"SSF.merge: {type(module).__name__} holds no scale and shift (merged already, "
                                  "or SSF never attached)", "method")
            scale, shift = module.ssf_scale.detach(), module.ssf_shift.detach()
            shape = (-1,) + (1,) * (module.weight.dim() - 1)  # the output channel first, for any layer
            module.weight.mul_(scale.view(shape))
            if module.bias is None:
                module.bias = nn.Parameter(torch.zeros_like(shift), requires_grad=False)
            module.bias.mul_(scale).add_(shift)
            module.ssf_hook.remove()
            del module.ssf_scale, module.ssf_shift, module.ssf_hook
