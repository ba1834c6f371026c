"""From captured tokens to P prompt values per layer: k-means, random tokens, pooled windows, xavier."""

from __future__ import annotations

import math

import numpy as np
import torch

from .capture import PooledTokens, TokenMoments, TokenReservoir, WindowPool
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
