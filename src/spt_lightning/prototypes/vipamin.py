"""VIPAMIN (Park & Chung, NeurIPS 2025): prompts from one batch of training images, as its code computes them
(github.com/iamjaekyun/vipamin: load_match[_deep].py, load_orth[_deep].py, the prompt loading in
src/models/vit_prompt/vit_mae.py).

For each prompted layer i, with the model's current (VPT xavier) prompts in place:

- **matching**: the keys of block i (``qkv`` of its normed input, averaged over heads and images) of the
  prompts and the patch tokens; each prompt takes the mean of the K patch tokens entering block i
  (averaged over the images) whose keys are closest to its own key in cosine similarity;
- **orthogonal**: from the prompt-free model, the span of block i's attention outputs (before ``proj``,
  averaged over the images, one vector per token); a uniform random vector (VPT's xavier bound) is mapped
  through block i's value projection, projected onto the orthogonal complement of that span and mapped
  back with ``pinv(W_V)`` (the code's form: ``(v - b) @ pinv(W_V)``, not ``pinv(W_V).T``);
- the prompts are ``(1 - lambda) * matching + lambda * orthogonal``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models import PromptedViT
from .errors import PrototypeError


def first_images(loader, count: int) -> torch.Tensor:
    """The first ``count`` images ``loader`` yields: VIPAMIN's one batch (a batch the loader dropped as
    unreadable, ``None``, is passed over)."""
    batches, seen = [], 0
    for batch in loader:
        if batch is not None:
            batches.append(batch[0])
            seen += len(batch[0])
        if seen >= count:
            break
    return torch.cat(batches)[:count]


def _attention_outputs(model: PromptedViT, images: torch.Tensor, layers: int) -> list[torch.Tensor]:
    """Per block i < layers of the prompt-free backbone: its attention output before ``proj``."""
    seen: list[torch.Tensor] = []
    blocks = model.vit.blocks[:layers]
    hooks = [b.attn.proj.register_forward_pre_hook(lambda _, args: seen.append(args[0])) for b in blocks]
    try:
        x = model.embed(images)
        for block in blocks:
            x = block(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def matching(model: PromptedViT, images: torch.Tensor, k: int) -> torch.Tensor:
    """``[layers, P, D]``: each prompt's mean of the K patch tokens whose block keys are closest to its key."""
    prompts, n = model.prompts, model.num_prefix_tokens
    p = prompts.length
    out = []
    for i, x in enumerate(model.block_sequences(images, prompts.num_layers)):
        block = model.vit.blocks[i]
        b, length, dim = x.shape
        heads = block.attn.num_heads
        keys = block.attn.qkv(block.norm1(x))[..., dim:2 * dim].reshape(b, length, heads, dim // heads)
        keys = keys.float().mean(2).mean(0)[n:]  # [P + patches, head_dim]: prefix tokens dropped
        if k > len(keys) - p:
            raise PrototypeError(f"init.vipamin_k={k} is more than the {len(keys) - p} patch tokens; lower it")
        unit = F.normalize(keys, dim=-1)
        cos = unit @ unit.T
        cos.fill_diagonal_(-torch.inf)
        cos[:p, :p] = -torch.inf  # a prompt never matches a prompt
        nearest = cos[:p].topk(k, dim=-1).indices - p  # [P, K] patch indices
        patches = x[:, model.patch_slice].float().mean(0)  # the patch tokens entering block i, averaged over images
        out.append(patches[nearest].mean(1))
    return torch.stack(out)


def orthogonal(model: PromptedViT, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``[layers, P, D]``: random prompts whose value vectors lie outside the span of the attention outputs."""
    prompts = model.prompts
    out = []
    for i, attended in enumerate(_attention_outputs(model, images, prompts.num_layers)):
        qkv = model.vit.blocks[i].attn.qkv
        dim = attended.shape[-1]
        w_v = qkv.weight[2 * dim:].float().cpu()
        b_v = qkv.bias[2 * dim:].float().cpu() if qkv.bias is not None else torch.zeros(dim)
        basis, _ = torch.linalg.qr(attended.float().mean(0).cpu().T, mode="reduced")  # [D, tokens]
        outside = torch.eye(dim) - basis @ basis.T
        bound = math.sqrt(6.0 / (prompts.patch_fan_in + dim))
        random = (torch.rand(prompts.length, dim, generator=generator) * 2 - 1) * bound
        values = (random @ w_v.T + b_v) @ outside.T
        out.append((values - b_v) @ torch.linalg.pinv(w_v))
    return torch.stack(out)


@torch.no_grad()
def vipamin(model: PromptedViT, images: torch.Tensor, k: int, lamb: float, seed: int) -> torch.Tensor:
    """The ``[layers, P, D]`` VIPAMIN prompts of ``model`` (its current prompts are the matching's queries)."""
    was_training = model.training
    model.eval()
    try:
        images = images.to(model.prompts.embeddings.device)
        match = matching(model, images, k).cpu()
        orth = orthogonal(model, images, torch.Generator().manual_seed(seed)).cpu() if lamb else torch.zeros_like(match)
    finally:
        model.train(was_training)
    return (1 - lamb) * match + lamb * orth
