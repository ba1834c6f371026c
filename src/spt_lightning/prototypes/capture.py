"""One pass of the frozen, prompt-free backbone that streams the tokens entering each layer into
per-layer collectors (anything with ``add(tokens)``; the strategies' own live in ``strategies``), and the
bounded uniform sample of tokens most of them keep.

Layer 0 holds the tokens that enter block 0: patch embeddings with position embedding added (and
``norm_pre``), prefix tokens dropped, which the prompts are concatenated to; or, as SPT's code has
it, the patch embeddings before position embedding (``layer0="patch_embed"``). Layer i > 0 holds the
output of block i-1, prefix tokens dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..models import PromptedViT


class TokenReservoir:
    """A uniform sample without replacement of at most ``capacity`` tokens from a stream.

    Every token gets a random key; the reservoir keeps the ``capacity`` smallest keys seen so far
    (compacting lazily, so a stream that fits keeps every token, in stream order). Tokens are held
    on ``device`` (see :func:`storage_device`), keys on the CPU.
    """

    def __init__(self, capacity: int, generator: torch.Generator, device: torch.device | str = "cpu"):
        if capacity <= 0:
            raise ValueError(f"reservoir capacity must be > 0, got {capacity}")
        self.capacity, self.generator, self.device = capacity, generator, torch.device(device)
        self.chunks: list[torch.Tensor] = []
        self.keys: list[torch.Tensor] = []
        self.seen = 0

    def add(self, tokens: torch.Tensor) -> None:
        tokens = tokens.reshape(-1, tokens.shape[-1]).to(self.device, torch.float32)
        self.chunks.append(tokens)
        self.keys.append(torch.rand(len(tokens), generator=self.generator))
        self.seen += len(tokens)
        if sum(len(c) for c in self.chunks) >= 2 * self.capacity:
            self._compact()

    def _compact(self) -> None:
        if not self.chunks:  # nothing seen (every image of the pass skipped as unreadable)
            return
        keys, tokens = torch.cat(self.keys), torch.cat(self.chunks)
        if len(keys) > self.capacity:
            keep = torch.topk(keys, self.capacity, largest=False).indices.sort().values
            keys, tokens = keys[keep], tokens[keep.to(tokens.device)]
        self.keys, self.chunks = [keys], [tokens]

    def tokens(self) -> torch.Tensor:
        """The sampled tokens, ``[min(capacity, seen), D]``, on the CPU."""
        self._compact()
        return self.chunks[0].cpu() if self.chunks else torch.empty(0)


def storage_device(device: torch.device, layers: int, tokens_per_layer: int, dim: int) -> torch.device:
    """Where the reservoirs hold captured tokens: on the GPU when they fit in a quarter of its free
    memory (copying every layer's tokens to the host would stall the pass at every block), else the CPU.

    ``tokens_per_layer`` is the most a reservoir holds at once (up to twice its capacity between compactions).
    """
    if device.type != "cuda":
        return torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(device)
    return device if layers * tokens_per_layer * dim * 4 <= free // 4 else torch.device("cpu")


@torch.no_grad()
def capture(
    model: PromptedViT,
    batches: Iterable[torch.Tensor],
    collectors: list,
    forward_context: Callable[[], AbstractContextManager] = nullcontext,
    layer0: str = "embedded",
) -> None:
    """Run the prompt-free backbone (eval mode) over ``batches``; layer i's tokens go to ``collectors[i]``
    (layer 0's after or before position embedding: ``layer0``, see :meth:`PromptedViT.block_inputs`)."""
    was_training = model.vit.training
    model.vit.eval()
    try:
        for images in batches:
            with forward_context():
                for layer, tokens in model.block_inputs(images, len(collectors), layer0):
                    collectors[layer].add(tokens)
    finally:
        model.vit.train(was_training)
