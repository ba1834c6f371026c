"""The init strategies as records (:class:`Strategy`, registered in :data:`STRATEGIES`): what each needs, how
it collects a layer's tokens in the capture pass, and how its P prompt values per layer come out: k-means,
random tokens, pooled windows, token moments, VIPAMIN's matching, VPT's xavier (data-free). The callback
asks a strategy's record, never its name; a new init is one :func:`register` call (README, Extending)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .capture import TokenReservoir
from .errors import PrototypeError

POOLING = ("sampled", "averaged")  # the pooled strategies: as SPT's code (sampled) or averaged over images
NEEDS = ("data", "batch", "nothing")


@dataclass(frozen=True)
class CollectorSpec:
    """What a collector is built for: one layer's P prompts from at most ``max_tokens`` kept tokens."""

    length: int
    max_tokens: int
    generator: torch.Generator
    device: torch.device | str
    options: dict[str, Any]  # the init.* settings (init.pooling, init.vipamin_k, ...)


@dataclass(frozen=True)
class LayerSpec:
    """One layer's prompts to make: its index, P, the seed, the k-means iterations and GPU (``None``: CPU),
    and the init.* settings (a registered init's own among them)."""

    layer: int
    length: int
    seed: int
    iters: int
    gpu: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Strategy:
    """An init strategy. ``needs``: ``data`` (a capture pass over the training split: ``collector`` builds
    each layer's collector, ``prompts`` turns it into ``([P, D], stats)``), ``batch`` (one batch of
    ``options[batch_images]`` images and the model: ``from_batch(model, images, options, seed)`` gives the
    ``[layers, P, D]`` prompts) or ``nothing`` (data-free: the prompts keep their initial values).
    ``settings``: the ``init.*`` keys it alone reads (its cache key and a tune grid over them).
    ``uses_kmeans``: it runs FAISS k-means (on the GPU where FAISS sees one). ``reads_prompts``: its values
    depend on the model's current prompts (in its cache key; a pack cannot share its pass)."""

    name: str
    needs: str = "data"
    collector: Callable[[CollectorSpec], Any] | None = None
    prompts: Callable[[Any, LayerSpec], tuple[torch.Tensor, dict]] | None = None
    from_batch: Callable[..., torch.Tensor] | None = None
    batch_images: str | None = None
    settings: tuple[str, ...] = ()
    uses_kmeans: bool = False
    reads_prompts: bool = False

    def __post_init__(self):
        if self.needs not in NEEDS:
            raise ValueError(f"Strategy {self.name}: needs={self.needs!r}, expected one of {NEEDS}")
        if self.needs == "data" and (self.collector is None or self.prompts is None):
            raise ValueError(f"Strategy {self.name}: a data strategy needs a collector and prompts")
        if self.needs == "batch" and (self.from_batch is None or self.batch_images is None):
            raise ValueError(f"Strategy {self.name}: a batch strategy needs from_batch and batch_images")


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Add ``strategy`` under its name (``prompt.init=<name>``); a name taken by another is refused."""
    if STRATEGIES.get(strategy.name, strategy) is not strategy:
        raise ValueError(f"prompt.init={strategy.name} is registered already")
    STRATEGIES[strategy.name] = strategy
    return strategy


PLUGINS = "spt_lightning.inits"  # the entry-point group where an installed package offers its Strategy records


def find(name: str) -> Strategy | None:
    """The record of ``prompt.init=name``, looking in installed packages' ``spt_lightning.inits`` entry
    points when it is not registered yet; ``None`` when no one offers it."""
    if name not in STRATEGIES:
        from importlib.metadata import entry_points

        for point in entry_points(group=PLUGINS, name=name):
            register(point.load())
    return STRATEGIES.get(name)


def strategy_of(name: str) -> Strategy:
    """The record of ``prompt.init=name``; an unknown name is refused with the known ones."""
    strategy = find(name)
    if strategy is None:
        raise PrototypeError(f"unknown prompt.init '{name}'; choose one of {', '.join(STRATEGIES)} (or install a "
                             f"package that offers it as a '{PLUGINS}' entry point)")
    return strategy


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


def _enough(tokens: torch.Tensor, layer: LayerSpec) -> torch.Tensor:
    if len(tokens) < layer.length:
        raise PrototypeError(
            f"layer {layer.layer}: only {len(tokens)} tokens were captured for {layer.length} prompts. Lower "
            f"prompt.length, raise init.data_fraction / init.tokens_per_prompt, or use prompt.init=xavier."
        )
    return tokens


def kmeans_prompts(reservoir: TokenReservoir, layer: LayerSpec) -> tuple[torch.Tensor, dict]:
    """SPT: the P k-means centroids of the layer's kept tokens."""
    tokens = _enough(reservoir.tokens(), layer)
    centroids, objective = kmeans(tokens, layer.length, layer.iters, layer.seed + layer.layer, layer.gpu)
    return centroids, {"tokens": len(tokens), "kmeans_objective": objective}


def sampled_prompts(reservoir: TokenReservoir, layer: LayerSpec) -> tuple[torch.Tensor, dict]:
    """P of the kept tokens (or pooled windows) drawn at random, seeded per layer; averaged windows as they are."""
    if isinstance(reservoir, WindowPool):
        return reservoir.tokens(), {"tokens": reservoir.seen}
    tokens = _enough(reservoir.tokens(), layer)
    pick = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(layer.seed + layer.layer))[:layer.length]
    return tokens[pick], {"tokens": len(tokens)}


def scaled_prompts(moments: TokenMoments, layer: LayerSpec) -> tuple[torch.Tensor, dict]:
    """Scale-matched: N(mean, std^2) per dimension of the layer's tokens, seeded per layer."""
    if moments.seen < 2:
        raise PrototypeError(f"layer {layer.layer}: {moments.seen} token(s) captured; the token spread needs two "
                             f"or more. Raise init.data_fraction or use prompt.init=xavier.")
    mean, std = moments.moments()
    noise = torch.randn(layer.length, len(mean), generator=torch.Generator().manual_seed(layer.seed + layer.layer))
    return mean + std * noise, {"tokens": moments.seen, "token_std": float(std.mean())}


def _reservoir(spec: CollectorSpec) -> TokenReservoir:
    return TokenReservoir(spec.max_tokens, spec.generator, spec.device)


def _pooled(mode: str) -> Callable[[CollectorSpec], Any]:
    def collector(spec: CollectorSpec):
        if spec.options.get("pooling", "sampled") == "averaged":
            return WindowPool(spec.length, mode)
        return PooledTokens(spec.length, mode, spec.max_tokens, spec.generator, spec.device)
    return collector


def _vipamin(model, images: torch.Tensor, options: dict[str, Any], seed: int) -> torch.Tensor:
    from .vipamin import vipamin

    return vipamin(model, images, options["vipamin_k"], float(options["vipamin_lambda"]), seed,
                   values=options["vipamin_values"], orth_scale=options["vipamin_orth_scale"])


register(Strategy("kmeans", collector=_reservoir, prompts=kmeans_prompts, uses_kmeans=True))
register(Strategy("random", collector=_reservoir, prompts=sampled_prompts))
register(Strategy("mean_pool", collector=_pooled("mean"), prompts=sampled_prompts))
register(Strategy("max_pool", collector=_pooled("max"), prompts=sampled_prompts))
register(Strategy("scaled", collector=lambda spec: TokenMoments(), prompts=scaled_prompts))
register(Strategy("vipamin", needs="batch", from_batch=_vipamin, batch_images="vipamin_images",
                  settings=("vipamin_k", "vipamin_lambda", "vipamin_images", "vipamin_values", "vipamin_orth_scale"),
                  reads_prompts=True))
register(Strategy("xavier", needs="nothing"))  # VPT's: the prompts keep their xavier-uniform start
