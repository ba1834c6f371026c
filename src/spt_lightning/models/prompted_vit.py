"""A timm ``VisionTransformer`` with VPT-style prompt tokens (shallow or deep)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..errors import ConfigError, check_choice
from .heads import HEAD_FEATURES
from .prompts import ExtraTokens, Prompts

ATTENTION = ("auto", "fused", "eager")
# Layer 0's captured tokens: after position embedding (what the prompts sit beside) or before it (SPT's code).
LAYER0 = ("embedded", "patch_embed")


class PromptedViT(nn.Module):
    """Prepends learnable prompts to the token sequence of a timm ViT.

    Token layout inside the blocks: ``[prefix (cls/registers) | prompts | patches]``. Prompts enter
    after position embedding (they have no position). Shallow: one set before block 0, carried
    through all blocks. Deep: a fresh set before every block, replacing the previous block's prompt
    outputs. The head reads ``head_feature`` (``models.heads``): for ``cls_token`` and ``patch_mean`` the
    prompts are cut out before the final norm, so timm's pooling and head see exactly the tokens they see
    without prompts; the ``prompt_patch_mean`` forms average the prompts with the patches, as SPT's and
    VPT's MAE code do.

    Only ``forward_features`` is rewritten; patch embedding, position embedding, blocks, pooling
    and head are timm's own. A method (``spt_lightning.methods``) may add modules to the blocks and a
    ``prompt_update(block, before, after)`` that the shallow prompted forward applies to the prompt
    tokens after each block (GatedPT's gates).

    Args:
        vit: The backbone, with its classification head already sized for the task.
        prompt_length: Prompt tokens per layer (P, at least 1); ``None``: no prompts (linear probe, full tuning).
        deep: One prompt set per block instead of one at the input.
        dropout: Dropout on the prompt tokens.
        head_feature: What the head reads (``models.heads.HEAD_FEATURES``); ``None``: timm's own pooling of
            ``vit``. The ViT must have been built with that feature's ``timm_pool``.
        trainable_prompts: ``False``: the prompts keep the values their init writes and do not train (the
            paper's Table 1a: only the head learns).
    """

    def __init__(self, vit: VisionTransformer, prompt_length: int | None = None, deep: bool = False,
                 dropout: float = 0.0, head_feature: str | None = None, trainable_prompts: bool = True):
        super().__init__()
        self.vit = vit
        self.deep = deep
        self.head_feature = None if head_feature is None else HEAD_FEATURES[
            check_choice("pretrain.head_feature", head_feature, list(HEAD_FEATURES))]
        self.prompts: Prompts | None = None
        self.prompt_update: nn.Module | None = None
        # The backbone's own parameters (what a method adds after construction is not among them).
        self.backbone_names = frozenset(n for n, _ in vit.named_parameters())
        self._backbone_modules = frozenset(n for n, _ in vit.named_modules())
        head = sum(p.numel() for p in vit.get_classifier().parameters())
        self.backbone_size = sum(p.numel() for p in vit.parameters()) - head  # parameters, without the head
        if prompt_length is not None:
            proj = vit.patch_embed.proj
            fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
            num_layers = len(vit.blocks) if deep else 1
            self.prompts = Prompts(num_layers, prompt_length, vit.embed_dim, dropout, patch_fan_in=fan_in)
            self.prompts.requires_grad_(bool(trainable_prompts))
        self.backbone_frozen = False

    def freeze_backbone(self) -> None:
        """Train only prompts and the classification head; the rest gets no gradient and stays in eval mode."""
        self.vit.requires_grad_(False)
        self.vit.get_classifier().requires_grad_(True)
        self.backbone_frozen = True
        self.train(self.training)

    def attach(self, method) -> None:
        """Add ``method``'s modules (once the pretrained weights are in); the head keeps training."""
        method.attach(self)
        if self.backbone_frozen:  # (peft freezes every tensor it did not add)
            self.vit.get_classifier().requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> "PromptedViT":
        # NOTE: Lightning (>= 2.2) restores each submodule's mode as it found it, so the frozen
        # backbone is pinned to eval here: its dropout stays off whatever the caller does. What a method
        # added (adapters and their dropout) follows the run's mode, and so does drop-path where the
        # backbone was built with it (backbone.drop_path_rate > 0: SSF's, FacT's, RepAdapter's recipes).
        super().train(mode)
        if self.backbone_frozen:
            self.vit.eval()
            for name, module in self.vit.named_modules():
                if name not in self._backbone_modules or isinstance(module, DropPath):
                    module.train(mode)
        return self

    def set_attention(self, setting: str, device: torch.device | None = None) -> None:
        """``fused``: PyTorch's ``scaled_dot_product_attention``; ``eager``: timm's matmul-softmax-matmul;
        ``auto``: eager on CPUs, fused everywhere else (on ``device``, else where the model is).

        Same maths, different kernels: on CPUs the eager path trains about 1.5x faster at ViT sequence
        lengths (the fused CPU backward is slow), on GPUs the fused one is faster and leaner.
        """
        if setting not in ATTENTION:
            raise ConfigError(f"attention={setting} is unknown; choose {', '.join(ATTENTION)}", "attention")
        if setting == "auto":
            device = device or next(self.parameters()).device
            setting = "eager" if device.type == "cpu" else "fused"
        for module in self.vit.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = setting == "fused"

    @property
    def attention(self) -> str:
        """The attention kernel in use (see :meth:`set_attention`)."""
        fused = any(getattr(m, "fused_attn", False) for m in self.vit.modules())
        return "fused" if fused else "eager"

    @property
    def num_prefix_tokens(self) -> int:
        return self.vit.num_prefix_tokens

    @property
    def prompt_length(self) -> int:
        return 0 if self.prompts is None else self.prompts.length

    @property
    def patch_slice(self) -> slice:
        """Where the patch tokens sit in a sequence entering a block: after the prefix tokens and prompts."""
        return slice(self.num_prefix_tokens + self.prompt_length, None)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Image → token sequence entering block 0 (patch embed, cls/registers + position, norm_pre)."""
        return self._embed_patches(self.vit.patch_embed(x))

    def _embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        return vit.norm_pre(vit.patch_drop(vit._pos_embed(patches)))

    def block_inputs(self, images: torch.Tensor, num_layers: int,
                     layer0: str = "embedded") -> Iterator[tuple[int, torch.Tensor]]:
        """``(i, tokens [B, N, D])`` for blocks ``0 .. num_layers-1`` of the prompt-free backbone: the patch
        tokens that enter block i (prefix tokens dropped), i.e. what layer i's prompts sit beside.

        ``layer0="patch_embed"`` gives block 0's tokens before position embedding (and ``norm_pre``)
        instead, as SPT's authors capture them.
        """
        if layer0 not in LAYER0:
            raise ValueError(f"layer0 must be one of {', '.join(LAYER0)}, got {layer0!r}")
        n = self.num_prefix_tokens
        with self._without_extra_tokens():
            patches = self.vit.patch_embed(images)
            x = self._embed_patches(patches)
            yield 0, patches.flatten(1, -2) if layer0 == "patch_embed" else x[:, n:]
            for i, block in enumerate(self.vit.blocks[: num_layers - 1]):
                x = block(x)
                yield i + 1, x[:, n:]

    @contextmanager
    def _without_extra_tokens(self) -> Iterator[None]:
        extras = [m for m in self.vit.modules() if isinstance(m, ExtraTokens)]
        for m in extras:
            m.enabled = False
        try:
            yield
        finally:
            for m in extras:
                m.enabled = True

    def block_sequences(self, images: torch.Tensor, num_layers: int) -> list[torch.Tensor]:
        """The whole sequences ``[B, prefix + P + N, D]`` entering blocks ``0 .. num_layers-1`` in the
        prompted forward (this model's prompts in place); the patch tokens are ``[:, self.patch_slice]``."""
        seen: list[torch.Tensor] = []
        hooks = [b.register_forward_pre_hook(lambda _, args: seen.append(args[0])) for b in self.vit.blocks[:num_layers]]
        try:
            self.forward_features(images)
        finally:
            for hook in hooks:
                hook.remove()
        return seen

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Image → the last block's output, prompts included: ``[B, prefix + P + N, D]``, before the final norm."""
        x = self.embed(x)
        if self.prompts is None:
            return self.vit.blocks(x)
        n, p, b = self.num_prefix_tokens, self.prompt_length, x.shape[0]
        for i, block in enumerate(self.vit.blocks):
            if i == 0:
                x = torch.cat([x[:, :n], self.prompts(0, b), x[:, n:]], dim=1)
            elif self.deep:
                x = torch.cat([x[:, :n], self.prompts(i, b), x[:, n + p :]], dim=1)
            before = x[:, n : n + p]
            x = block(x)
            if self.prompt_update is not None:
                x = torch.cat([x[:, :n], self.prompt_update(i, before, x[:, n : n + p]), x[:, n + p :]], dim=1)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final norm's output over the prefix and patch tokens (the prompts cut out): timm's own."""
        x = self.tokens(x)
        n, p = self.num_prefix_tokens, self.prompt_length
        return self.vit.norm(torch.cat([x[:, :n], x[:, n + p :]], dim=1) if p else x)

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The head's input ``[B, D]``, as ``head_feature`` pools it."""
        feature = self.head_feature
        if feature is None or not feature.with_prompts:
            return self.vit.forward_head(self.forward_features(x), pre_logits=True)
        pooled = self.tokens(x)[:, self.num_prefix_tokens :].mean(dim=1)  # prompts and patches
        norm = self.vit.norm
        pooled = norm(pooled) if feature.affine else F.layer_norm(pooled, norm.normalized_shape, eps=norm.eps)
        return self.vit.head_drop(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.get_classifier()(self.pre_logits(x))
