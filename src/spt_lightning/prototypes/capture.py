"""One pass of the frozen, prompt-free backbone that streams the tokens entering each layer into
bounded per-layer collectors.

Layer 0 holds the tokens that enter block 0: patch embeddings with position embedding added (and
``norm_pre``), prefix tokens dropped, which the prompts are concatenated to; or, as SPT's code has
it, the patch embeddings before position embedding (``layer0="patch_embed"``). Layer i > 0 holds the
output of block i-1, prefix tokens dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F

from ..models import PromptedViT
from .errors import PrototypeError


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
    """Pooled windows averaged over images (``init.pooling=averaged``): the N patch tokens of each image
    are split into P contiguous windows (adaptive 1-D pooling), each pooled by mean or max; the P
    prompts are the average of each window over all images."""

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


class TokenMoments:
    """Per-dimension mean and standard deviation of every token streamed (float64 running sums): the
    statistics ``prompt.init=scaled`` draws its prompts from."""

    def __init__(self):
        self.sum: torch.Tensor | None = None
        self.sum_sq: torch.Tensor | None = None
        self.seen = 0

    def add(self, tokens: torch.Tensor) -> None:
        x = tokens.reshape(-1, tokens.shape[-1]).double()
        s, sq = x.sum(0), (x * x).sum(0)  # stays where the model runs: no host sync per batch
        self.sum, self.sum_sq = (s, sq) if self.sum is None else (self.sum + s, self.sum_sq + sq)
        self.seen += len(x)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [D], std [D])`` on the CPU, float32."""
        mean = self.sum / self.seen
        var = (self.sum_sq / self.seen - mean * mean).clamp_min(0)
        return mean.float().cpu(), var.sqrt().float().cpu()


def authors_windows(tokens: torch.Tensor, windows: int, mode: str) -> torch.Tensor:
    """SPT's code's pooled windows of each image, ``[B, N, D]`` → ``[B, P, D]``: P-1 windows of
    ``N // (P-1)`` tokens from the start, then the last ``N % (N // (P-1))`` tokens (all N when that is 0,
    as ``x[:, -0:]`` reads in their code), each mean- or max-pooled. P = 1 pools the whole sequence."""
    pool = (lambda x: x.mean(1)) if mode == "mean" else (lambda x: x.amax(1))
    n = tokens.shape[1]
    if windows == 1:
        return pool(tokens).unsqueeze(1)
    size = n // (windows - 1)
    if size == 0:
        raise PrototypeError(f"{n} patch tokens cannot fill the {windows - 1} pooled windows of prompt.length="
                             f"{windows}; lower prompt.length or use init.pooling=averaged")
    parts = [tokens[:, i * size:(i + 1) * size] for i in range(windows - 1)]
    parts.append(tokens[:, n - n % size:] if n % size else tokens)
    return torch.stack([pool(part) for part in parts], dim=1)


class PooledTokens(TokenReservoir):
    """SPT's code's pooled variants: P pooled windows per image (:func:`authors_windows`), sampled
    uniformly over all images like tokens; the strategy then picks P of them at random."""

    def __init__(self, windows: int, mode: str, capacity: int, generator: torch.Generator,
                 device: torch.device | str = "cpu"):
        super().__init__(capacity, generator, device)
        self.windows, self.mode = windows, mode

    def add(self, tokens: torch.Tensor) -> None:
        super().add(authors_windows(tokens.float(), self.windows, self.mode))


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
