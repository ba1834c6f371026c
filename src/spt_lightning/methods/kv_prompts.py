"""E²VPT's key-value prompts (Han et al., ICCV 2023, "E^2VPT: An Effective and Efficient Approach for
Visual Prompt Tuning"; code: ChengHan111/E2VPT): learnable tokens prepended to the keys and values of
every block's self-attention, beside the visual prompts of the prompted ViT (deep, as E²VPT's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention
from torch import nn

from ..errors import ConfigError, check_number
from ..models import PromptedViT
from ..models.prompts import ExtraTokens
from .base import Method


class KVPromptAttention(ExtraTokens):
    """timm's ``Attention`` with ``length`` learnable tokens per head prepended to its keys and values.

    As E²VPT's code (``SHARE_PARAM_KV``, ``LAYER_BEHIND``, ``ORIGIN_INIT=2``): one tensor
    ``[heads, length, head_dim]`` serves as both the extra keys and the extra values, placed before the
    sequence's, Kaiming-uniform initialised. Queries stay the sequence's: the output has its length.
    Off (``enabled=False``) it is the frozen attention, which the prototype pass reads.
    """

    def __init__(self, attn: Attention, length: int):
        super().__init__()
        if getattr(attn, "gate", None) is not None:
            raise ConfigError("KV prompts are not written for gated attention (this backbone's)", "method")
        self.attn = attn
        self.kv = nn.Parameter(torch.empty(attn.num_heads, length, attn.head_dim))
        nn.init.kaiming_uniform_(self.kv, a=0, mode="fan_in", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        a = self.attn
        if not self.enabled:
            return a(x, **kwargs)
        if kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
            raise NotImplementedError("KV prompts with an attention mask")
        B, N, C = x.shape
        q, k, v = a.qkv(x).reshape(B, N, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = a.q_norm(q), a.k_norm(k)
        extra = self.kv.to(k.dtype).expand(B, -1, -1, -1)
        k, v = torch.cat([extra, k], dim=2), torch.cat([extra, v], dim=2)
        if a.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=a.attn_drop.p if self.training else 0.0)
        else:
            x = a.attn_drop((q * a.scale @ k.transpose(-2, -1)).softmax(dim=-1)) @ v
        x = a.norm(x.transpose(1, 2).reshape(B, N, a.attn_dim))
        return a.proj_drop(a.proj(x))


class KVPrompts(Method):
    """E²VPT without its pruning stage: key-value prompts in every block plus the prompted ViT's visual
    prompts (any ``prompt.init``: ``xavier`` as E²VPT, ``kmeans`` for E²VPT with SPT's init).

    Args:
        name: The method's name.
        length: Key-value tokens per block (E²VPT's ``NUM_TOKENS``; its VTAB tables use 1-10).
    """

    def __init__(self, name: str = "e2vpt", length: int = 5):
        super().__init__(name)
        self.length = check_number("method.length", length, 1, integer=True)

    def attach(self, model: PromptedViT) -> None:
        if mask := [b for b in model.vit.blocks if not isinstance(b.attn, Attention)]:
            raise ConfigError(f"method={self.name} needs timm's Attention in every block, not "
                              f"{type(mask[0].attn).__name__}", "method")
        for block in model.vit.blocks:
            block.attn = KVPromptAttention(block.attn, self.length)
