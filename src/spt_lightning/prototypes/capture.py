"""One pass of the frozen, prompt-free backbone that streams the tokens entering each layer into
bounded per-layer collectors.

Layer 0 holds the tokens that enter block 0: patch embeddings **with** position embedding added
(and ``norm_pre``), prefix tokens dropped. Prompts are concatenated to exactly these tokens (after
position embedding), so their initial values are drawn from the same distribution. Layer i > 0
holds the output of block i-1, prefix tokens dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F

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
        keys, tokens = torch.cat(self.keys), torch.cat(self.chunks)
        if len(keys) > self.capacity:
            keep = torch.topk(keys, self.capacity, largest=False).indices.sort().values
            keys, tokens = keys[keep], tokens[keep.to(tokens.device)]
        self.keys, self.chunks = [keys], [tokens]

    def tokens(self) -> torch.Tensor:
        """The sampled tokens, ``[min(capacity, seen), D]``, on the CPU."""
        self._compact()
        return self.chunks[0].cpu() if self.chunks else torch.empty(0)


class WindowPool:
    """SPT's pooled-window tokens: the N patch tokens of each image are split into P contiguous
    windows (adaptive 1-D pooling), each pooled by mean or max; the result is averaged over images."""

    def __init__(self, windows: int, mode: str):
        self.windows, self.mode = windows, mode
        self.total: torch.Tensor | None = None
        self.images = self.seen = 0

    def add(self, tokens: torch.Tensor) -> None:
        pool = F.adaptive_avg_pool1d if self.mode == "mean" else F.adaptive_max_pool1d
        pooled = pool(tokens.float().transpose(1, 2), self.windows).transpose(1, 2)  # [B, P, D]
        batch_sum = pooled.sum(0)  # stays where the model runs: no host sync per batch
        self.total = batch_sum if self.total is None else self.total + batch_sum
        self.seen += tokens.shape[0] * tokens.shape[1]
        self.images += tokens.shape[0]

    def tokens(self) -> torch.Tensor:
        return (self.total / self.images).cpu()


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
    collectors: list[TokenReservoir | WindowPool],
    forward_context: Callable[[], AbstractContextManager] = nullcontext,
) -> None:
    """Run the prompt-free backbone (eval mode) over ``batches``; layer i's tokens go to ``collectors[i]``."""
    was_training = model.vit.training
    model.vit.eval()
    try:
        for images in batches:
            with forward_context():
                for layer, tokens in model.block_inputs(images, len(collectors)):
                    collectors[layer].add(tokens)
    finally:
        model.vit.train(was_training)
