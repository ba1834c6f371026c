"""Each strategy's collector (what the capture pass keeps of a layer's tokens) and how P prompt values per
layer come out of it: k-means, random tokens, pooled windows, token moments."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .capture import TokenReservoir
from .errors import PrototypeError

STRATEGIES = ("kmeans", "random", "mean_pool", "max_pool", "scaled", "vipamin", "xavier")
POOLING = ("sampled", "averaged")  # the pooled strategies: as SPT's code (sampled) or averaged over images


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise PrototypeError(f"unknown prompt.init '{strategy}'; choose one of {', '.join(STRATEGIES)}")


def needs_data(strategy: str) -> bool:
    check_strategy(strategy)
    return strategy != "xavier"


def make_collector(strategy: str, length: int, max_tokens: int, generator: torch.Generator,
                   device: torch.device | str = "cpu", pooling: str = "sampled"):
    if strategy == "scaled":
        return TokenMoments()
    if strategy in ("mean_pool", "max_pool"):
        mode = strategy.removesuffix("_pool")
        if pooling == "averaged":
            return WindowPool(length, mode)
        return PooledTokens(length, mode, max_tokens, generator, device)
    return TokenReservoir(max_tokens, generator, device)


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


def kmeans(tokens: torch.Tensor, k: int, iters: int, seed: int, gpu: int | None = None) -> tuple[torch.Tensor, float]:
    """FAISS k-means over **every** given token, on GPU ``gpu`` (an index) or, with ``None``, the CPU.

    Returns the ``[k, D]`` centroids and the final objective (sum of squared distances).
    """
    import faiss

    x = np.ascontiguousarray(tokens.numpy(), dtype=np.float32)
    params = faiss.ClusteringParameters()
    params.niter, params.seed, params.verbose = iters, seed, False
    # NOTE: FAISS subsamples to max_points_per_centroid * k points (default 256 * k); lift the limit
    # so the prototypes summarise every token the reservoir kept.
    params.max_points_per_centroid, params.min_points_per_centroid = math.ceil(len(x) / k), 1
    clustering = faiss.Clustering(x.shape[1], k, params)
    if gpu is None:
        index = faiss.IndexFlatL2(x.shape[1])
    else:  # one GPU, the caller's: faiss.Kmeans(gpu=True) would spread over every GPU of the node
        config, resources = faiss.GpuIndexFlatConfig(), faiss.StandardGpuResources()  # alive while training
        config.device = gpu
        index = faiss.GpuIndexFlatL2(resources, x.shape[1], config)
    clustering.train(x, index)
    centroids = faiss.vector_to_array(clustering.centroids).reshape(k, x.shape[1])
    objective = clustering.iteration_stats.at(clustering.iteration_stats.size() - 1).obj
    return torch.from_numpy(centroids), float(objective)


def kmeans_gpu(device: torch.device) -> int | None:
    """The GPU FAISS k-means runs on: the model's, else GPU 0 when FAISS sees one, else ``None`` (CPU)."""
    import faiss

    if faiss.get_num_gpus() == 0:
        return None
    return (device.index or 0) if device.type == "cuda" else 0


def prototypes(strategy: str, collector, layer: int, length: int, iters: int, seed: int,
               gpu: int | None = None) -> tuple[torch.Tensor, dict]:
    """The ``[length, D]`` initial prompts of one layer, and stats for the log."""
    if isinstance(collector, WindowPool):
        return collector.tokens(), {"tokens": collector.seen}
    if isinstance(collector, TokenMoments):  # scale-matched: N(mean, std^2) per dimension, seeded per layer
        if collector.seen < 2:
            raise PrototypeError(f"layer {layer}: {collector.seen} token(s) captured; the token spread needs two "
                                 f"or more. Raise init.data_fraction or use prompt.init=xavier.")
        mean, std = collector.moments()
        noise = torch.randn(length, len(mean), generator=torch.Generator().manual_seed(seed + layer))
        return mean + std * noise, {"tokens": collector.seen, "token_std": float(std.mean())}
    tokens = collector.tokens()
    if len(tokens) < length:
        raise PrototypeError(
            f"layer {layer}: only {len(tokens)} tokens were captured for {length} prompts. Lower "
            f"prompt.length, raise init.data_fraction / init.tokens_per_prompt, or use prompt.init=xavier."
        )
    if strategy in ("random", "mean_pool", "max_pool"):  # pooled: P of the images' pooled windows
        pick = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(seed + layer))[:length]
        return tokens[pick], {"tokens": len(tokens)}
    centroids, objective = kmeans(tokens, length, iters, seed + layer, gpu)
    return centroids, {"tokens": len(tokens), "kmeans_objective": objective}
