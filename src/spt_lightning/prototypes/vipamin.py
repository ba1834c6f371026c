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

Two switches, faithful to the code by default (``init.vipamin_values``, ``init.vipamin_orth_scale``):

- **which block's value projection** maps layer i's orthogonal part: ``code`` takes the one the authors'
  loop ends with. It matches parameter names by substring (``f"enc.blocks.{i}" in name``), so layer i gets
  the *last* block whose index starts with the digits of i: in a 12-block ViT, layer 1 gets block **11**'s
  ``W_V`` and bias (blocks 10 and 11 overwrite block 1's); every other layer its own. ``own``: block i's.
- **the orthogonal part's scale**: ``code`` keeps it as ``pinv(W_V)`` gives it. With near-singular value
  projections (smallest singular values 1e-5..1e-3 are common) it comes out 10-1000x the tokens' norm; a
  pre-LN block ignores a prompt's scale in the forward pass but its gradient shrinks by the same factor,
  so those prompts barely train. ``match`` rescales each orthogonal prompt to the layer's mean
  matching-prompt norm before mixing, ``tokens`` to the layer's mean patch-token norm.

Code and paper differ in two places; the code is followed: the paper maps ``P W_V r`` back without the value
bias (the code adds it before the projection and subtracts it after: ``P (W_V r + b) - b``), and applies
``W_V^+`` to column vectors (the code's row form ``v @ pinv(W_V)`` is ``pinv(W_V)^T v``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..models import PromptedViT
from .errors import PrototypeError

VALUE_BLOCKS = ("code", "own")
ORTH_SCALES = ("code", "match", "tokens")


def value_block(layer: int, depth: int, rule: str = "code") -> int:
    """The block whose value projection maps layer ``layer``'s orthogonal part. ``code``: the last block j of
    ``depth`` whose parameter names contain ``enc.blocks.{layer}`` (the authors' substring match: j's digits
    start with ``layer``'s); ``own``: ``layer``."""
    if rule == "own":
        return layer
    return max(j for j in range(depth) if str(j).startswith(str(layer)))


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


def _prompt_free_pass(model: PromptedViT, images: torch.Tensor, layers: int) -> tuple[list[torch.Tensor], list[float]]:
    """Per block i < layers of the prompt-free backbone: its attention output before ``proj``, and the mean
    L2 norm of the patch tokens entering it."""
    seen: list[torch.Tensor] = []
    norms: list[float] = []
    blocks = model.vit.blocks[:layers]
    hooks = [b.attn.proj.register_forward_pre_hook(lambda _, args: seen.append(args[0])) for b in blocks]
    try:
        x = model.embed(images)
        for block in blocks:
            norms.append(x[:, model.num_prefix_tokens:].float().norm(dim=-1).mean().item())
            x = block(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen, norms


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


def orthogonal(model: PromptedViT, images: torch.Tensor, generator: torch.Generator,
               values: str = "code") -> torch.Tensor:
    """``[layers, P, D]``: random prompts whose value vectors lie outside the span of the attention outputs
    (``values``: which block's value projection maps them, see :func:`value_block`)."""
    attention, _ = _prompt_free_pass(model, images, model.prompts.num_layers)
    return _orthogonal(model, attention, generator, values)


def _orthogonal(model: PromptedViT, attention: list[torch.Tensor], generator: torch.Generator,
                values: str) -> torch.Tensor:
    prompts = model.prompts
    out = []
    for i, attended in enumerate(attention):
        qkv = model.vit.blocks[value_block(i, len(model.vit.blocks), values)].attn.qkv
        dim = attended.shape[-1]
        w_v = qkv.weight[2 * dim:].float().cpu()
        b_v = qkv.bias[2 * dim:].float().cpu() if qkv.bias is not None else torch.zeros(dim)
        basis, _ = torch.linalg.qr(attended.float().mean(0).cpu().T, mode="reduced")  # [D, tokens]
        outside = torch.eye(dim) - basis @ basis.T
        bound = math.sqrt(6.0 / (prompts.patch_fan_in + dim))
        random = (torch.rand(prompts.length, dim, generator=generator) * 2 - 1) * bound
        value = (random @ w_v.T + b_v) @ outside.T
        out.append((value - b_v) @ torch.linalg.pinv(w_v))
    return torch.stack(out)


def rescaled(orth: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """``orth [layers, P, D]`` with every prompt of layer i at L2 norm ``norms[i]``."""
    return F.normalize(orth, dim=-1) * norms.to(orth).view(-1, 1, 1)


@torch.no_grad()
def vipamin(model: PromptedViT, images: torch.Tensor, k: int, lamb: float, seed: int, values: str = "code",
            orth_scale: str = "code") -> torch.Tensor:
    """The ``[layers, P, D]`` VIPAMIN prompts of ``model`` (its current prompts are the matching's queries)."""
    was_training = model.training
    model.eval()
    try:
        images = images.to(model.prompts.embeddings.device)
        match = matching(model, images, k).cpu()
        if not lamb:
            return match
        attention, token_norms = _prompt_free_pass(model, images, model.prompts.num_layers)  # one pass for both
        orth = _orthogonal(model, attention, torch.Generator().manual_seed(seed), values).cpu()
        if orth_scale == "match":
            orth = rescaled(orth, match.norm(dim=-1).mean(-1))
        elif orth_scale == "tokens":
            orth = rescaled(orth, torch.tensor(token_norms))
    finally:
        model.train(was_training)
    return (1 - lamb) * match + lamb * orth
