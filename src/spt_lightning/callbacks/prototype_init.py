"""The Lightning callback that writes data-driven initial prompts (SPT) before training starts."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from ..console import CONSOLE
from ..data.datasets import content_digest
from ..errors import check_choice, check_number
from ..models.prompted_vit import LAYER0
from ..prototypes import cache
from ..prototypes.capture import capture, storage_device
from ..prototypes.strategies import POOLING, CollectorSpec, LayerSpec, kmeans_gpu, strategy_of
from ..prototypes.vipamin import ORTH_SCALES, VALUE_BLOCKS, first_images

log = logging.getLogger(__name__)


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def describe(stats: dict[str, Any]) -> str:
    """The init statistics as one readable line: layers, tokens, k-means objective range, time, device, cache."""
    layers = stats["layers"]
    tokens = sorted({s["tokens"] for s in layers})
    span = f"{tokens[0]:,}" if len(tokens) == 1 else f"{tokens[0]:,}-{tokens[-1]:,}"
    parts = [f"{len(layers)} layer(s)", f"{span} tokens per layer"]
    objective = [s["kmeans_objective"] for s in layers if "kmeans_objective" in s]
    if objective:
        parts.append(f"k-means objective {min(objective):,.0f}-{max(objective):,.0f}")
    if "images" in stats:
        parts.append(f"{stats['images']} images")
    parts.append(f"{stats['time']:.1f} s (data pass {stats.get('capture_time', 0.0):.1f} s)")
    if "kmeans_device" in stats:
        parts.append(f"k-means on {stats['kmeans_device']}")
    parts.append(f"cache {stats.get('cache', 'off')}")
    return ", ".join(parts)


class PrototypeInit(Callback):
    """Initialise the prompts from the downstream data's own tokens, once, in ``on_fit_start``.

    Runs after the checkpoint restore and the strategy setup, so it writes into the parameters the
    optimizer trains (in place) and is skipped when fitting resumes from a checkpoint. Under DDP
    rank 0 computes and every rank receives the same values.

    Args:
        strategy: The init's name (``prompt.init``): a record of ``strategies.STRATEGIES`` (``kmeans``,
            ``random``, ``mean_pool``, ``max_pool``, ``scaled``, ``vipamin``, ``xavier`` (data-free: nothing
            to do), or one registered with ``strategies.register``), which says what it needs and does.
        tokens_per_prompt: Tokens kept per prompt and layer: a uniform sample of ``tokens_per_prompt * P``
            tokens over the whole pass (256: FAISS's own k-means subsample); ``None``: every token.
        data_fraction: Part of the training split the pass reads (seeded).
        layer0: Layer 0's tokens: ``patch_embed`` (before position embedding, as SPT's code) or
            ``embedded`` (after it: the tokens the prompts are concatenated to).
        transforms: The pass reads the training images with their ``train`` transforms (SPT's code) or
            the ``eval`` ones.
        pooling: ``mean_pool`` / ``max_pool`` as SPT's code has them (``sampled``: P pooled windows per
            image, P of them picked at random over all images) or ``averaged`` (each window averaged over
            the images).
        kmeans_iters: Lloyd iterations of FAISS k-means.
        vipamin_k: VIPAMIN's K: patch tokens averaged per matched prompt (its code tunes 2, 8, 32, 128).
        vipamin_lambda: VIPAMIN's lambda: weight of the orthogonal part (its code tunes (K, lambda) in
            {2, 8, 32, 128} x {0, 0.5} and (2, 1) jointly with the lr: recipe=vipamin).
        vipamin_images: Images in VIPAMIN's one batch (its code: 256).
        vipamin_values: Which block's value projection maps layer i's orthogonal part: ``code`` (the
            authors' loop: layer 1 takes the last block whose index starts with 1, block 11 of 12) or
            ``own`` (block i's).
        vipamin_orth_scale: The orthogonal part's scale: ``code`` (as ``pinv(W_V)`` gives it), ``match``
            (each prompt at the layer's mean matching-prompt norm) or ``tokens`` (at its patch tokens').
        seed: Seed of sampling and k-means.
        cache_dir: Folder of cached prototypes (``None``: no cache).
        batch_size: Batch size of the capture pass (``None``: the datamodule's).
        **extra: A registered init's own settings (``init.<key>`` in its YAML), handed to it in
            ``options`` and, those it lists in ``settings``, part of the cache key.
    """

    def __init__(
        self,
        strategy: str = "kmeans",
        tokens_per_prompt: int | None = 256,
        data_fraction: float = 1.0,
        layer0: str = "patch_embed",
        transforms: str = "train",
        pooling: str = "sampled",
        kmeans_iters: int = 20,
        vipamin_k: int = 8,
        vipamin_lambda: float = 0.5,
        vipamin_images: int = 256,
        vipamin_values: str = "code",
        vipamin_orth_scale: str = "code",
        seed: int = 0,
        cache_dir: str | None = None,
        batch_size: int | None = None,
        **extra: Any,
    ):
        self.strategy = strategy_of(strategy)  # an unknown name is refused with the known ones
        check_number("init.data_fraction", data_fraction, 0, 1, low_open=True, high_open=False)
        if tokens_per_prompt is not None:
            check_number("init.tokens_per_prompt", tokens_per_prompt, 1, integer=True, hint=" or null")
        check_choice("init.layer0", layer0, LAYER0)
        check_choice("init.pooling", pooling, POOLING)
        check_choice("init.transforms", transforms, ("train", "eval"))
        check_number("init.kmeans_iters", kmeans_iters, 1, integer=True, hint=" (default 20)")
        check_number("init.vipamin_k", vipamin_k, 1, integer=True)
        check_number("init.vipamin_lambda", vipamin_lambda, 0, 1, high_open=False)
        check_number("init.vipamin_images", vipamin_images, 1, integer=True)
        check_choice("init.vipamin_values", vipamin_values, VALUE_BLOCKS)
        check_choice("init.vipamin_orth_scale", vipamin_orth_scale, ORTH_SCALES)
        # What the strategies read of the settings (pooling, VIPAMIN's, a registered init's own) ...
        self.options = {"pooling": pooling, "vipamin_k": vipamin_k, "vipamin_lambda": vipamin_lambda,
                        "vipamin_images": vipamin_images, "vipamin_values": vipamin_values,
                        "vipamin_orth_scale": vipamin_orth_scale, **extra}
        # ... and what determines the prototypes besides the data and the model (the cache key): the shared
        # settings and those the strategy alone reads.
        self.settings = {"strategy": strategy, "tokens_per_prompt": tokens_per_prompt,
                         "data_fraction": data_fraction, "layer0": layer0, "transforms": transforms, "pooling": pooling,
                         "kmeans_iters": kmeans_iters, "seed": seed,
                         **{key: self.options[key] for key in self.strategy.settings}}
        self.tokens_per_prompt, self.data_fraction = tokens_per_prompt, data_fraction
        self.kmeans_iters, self.seed, self.batch_size = kmeans_iters, seed, batch_size
        self.layer0, self.train_transforms = layer0, transforms == "train"
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.stats: dict[str, Any] = {}

    results_key = "init"  # record.init_stats hands results_record() to results.json under this key

    def results_record(self) -> dict[str, Any]:
        """The init's statistics for results.json (layers, objectives, timings, cache); ``{}`` before fit."""
        return self.stats

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        prompts = pl_module.model.prompts
        if prompts is None or self.strategy.needs == "nothing":
            return
        if trainer.ckpt_path:
            log.info("Resuming from %s: prompts come from the checkpoint, not re-initialised", trainer.ckpt_path,
                     extra=CONSOLE)
            return
        started = time.perf_counter()
        # NOTE: the data pass draws from the global RNG (loader seeds); forking keeps training's random
        # stream the same whether the prototypes were computed or read from the cache, on every rank.
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            entry = self._compute(trainer, pl_module) if trainer.is_global_zero else None
        entry = trainer.strategy.broadcast(entry, src=0)
        prompts.assign(entry["prompts"])  # (a pack of grid points: into every point's prompts)
        self.stats = {**entry["stats"], "time": time.perf_counter() - started}
        log.info("Prompt init (%s): %s", self.strategy.name, describe(self.stats), extra=CONSOLE)
        metrics = {"init/time": self.stats["time"]}
        for layer, s in enumerate(self.stats["layers"]):
            metrics[f"init/tokens/layer{layer}"] = s["tokens"]
            if "kmeans_objective" in s:
                metrics[f"init/kmeans_objective/layer{layer}"] = s["kmeans_objective"]
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=0)

    def _key(self, trainer: L.Trainer, pl_module: L.LightningModule, loader) -> str:
        """Everything the prototypes depend on: the exact items the pass reads (not the config keys that
        chose them: protocol, fraction, split files), their transform, the weights and the settings."""
        dm, model = trainer.datamodule, pl_module.model
        return cache.cache_key({
            "items": content_digest(loader.dataset),
            "transform": repr(dm.transforms(train=self.train_transforms)),
            # random augmentations are drawn per loader worker: another worker count, or another batch size
            # (which decides the worker of each image), gives other draws
            "workers": loader.num_workers if self.train_transforms else None,
            "batch": loader.batch_size if self._random_augmentation(dm) and loader.num_workers else None,
            "sampling": "one generator per layer",  # entries of the shared-generator code (other samples) miss
            "backbone": type(model.vit).__name__,
            "weights": cache.weights_fingerprint(model.vit, skip=("head.",)),
            "layers": model.prompts.num_layers,
            "length": model.prompts.length,
            **self.settings,
            "precision": str(trainer.precision),
            "attention": model.attention,  # fused and eager kernels round differently in bf16
            # a strategy that reads the current (xavier) prompts (VIPAMIN's matching): their values are an input
            "start": cache.weights_fingerprint(model.prompts) if self.strategy.reads_prompts else None,
        })

    def _random_augmentation(self, dm) -> bool:
        return self.train_transforms and repr(dm.transforms(train=True)) != repr(dm.transforms(train=False))

    def _from_batch(self, model, loader) -> dict[str, Any]:
        started = time.perf_counter()
        images = first_images(loader, self.options[self.strategy.batch_images])
        prompts = self.strategy.from_batch(model, images, self.options, self.seed)
        return {"prompts": prompts, "stats": {"layers": [{"tokens": len(images) * model.vit.patch_embed.num_patches}
                                                          for _ in range(len(prompts))],
                                              "images": len(images), "capture_time": time.perf_counter() - started,
                                              "prototype_time": 0.0, "cache": "miss" if self.cache_dir else "off"}}

    def _loader(self, dm):
        """The images the init reads: the (seeded part of the) training split; a batch strategy (VIPAMIN):
        one seeded batch of it."""
        if self.strategy.needs == "data":
            return dm.prototype_dataloader(self.data_fraction, self.seed, self.batch_size, self.train_transforms)
        available = len(dm.prototype_dataloader(self.data_fraction, self.seed).dataset)
        images = self.options[self.strategy.batch_images]
        return dm.prototype_dataloader(self.data_fraction * min(1.0, images / available), self.seed, images,
                                       self.train_transforms)

    def _compute(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        model = pl_module.model
        loader = self._loader(trainer.datamodule)
        path = self.cache_dir / f"{self._key(trainer, pl_module, loader)}.pt" if self.cache_dir else None
        shape = (model.prompts.num_layers, model.prompts.length, model.vit.embed_dim)
        if path is not None and (hit := cache.load(path, shape)) is not None:
            log.info("Prototype cache hit: %s (no data pass)", path)
            return {"prompts": hit["prompts"], "stats": {**hit["stats"], "cache": "hit"}}
        if self.strategy.needs == "batch":
            entry = self._from_batch(model, loader)
            if path is not None:
                cache.save(path, entry)
            return entry
        device, num_layers = pl_module.device, model.prompts.num_layers
        every = len(loader.dataset) * model.vit.patch_embed.num_patches
        kept = every if self.tokens_per_prompt is None else min(every, self.tokens_per_prompt * model.prompts.length)
        held = min(2 * kept, every)
        storage = storage_device(device, num_layers, held, model.vit.embed_dim)
        # One generator per layer: each layer's sample keys follow the token stream alone, so the sample is
        # the same whatever the batch size (a shared generator interleaves the layers' draws per batch).
        collectors = [
            self.strategy.collector(CollectorSpec(model.prompts.length, max(kept, 1),
                                                  torch.Generator().manual_seed(self.seed * 10_000 + layer), storage,
                                                  self.options))
            for layer in range(num_layers)
        ]
        started = time.perf_counter()
        capture(model, (batch[0].to(device, non_blocking=True) for batch in loader if batch is not None), collectors,
                trainer.precision_plugin.forward_context, self.layer0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the pass is asynchronous when the tokens stay on the GPU
        capture_time = time.perf_counter() - started
        values, layers = [], []
        gpu = kmeans_gpu(device) if self.strategy.uses_kmeans else None
        if self.strategy.uses_kmeans and gpu is None and torch.cuda.is_available():
            _warn_once("k-means runs on the CPU: CUDA is available but this FAISS sees no GPU. Install the CUDA "
                       "build (pip install faiss-gpu-cu12, without faiss-cpu beside it) for GPU k-means.")
        for layer, collector in enumerate(collectors):
            value, stats = self.strategy.prompts(collector, LayerSpec(layer, model.prompts.length, self.seed,
                                                                       self.kmeans_iters, gpu, self.options))
            values.append(value)
            layers.append(stats)
        stats = {"layers": layers, "capture_time": capture_time,
                 **({"kmeans_device": "cpu" if gpu is None else f"cuda:{gpu}"} if self.strategy.uses_kmeans else {}),
                 "prototype_time": time.perf_counter() - started - capture_time, "cache": "miss" if path else "off"}
        entry = {"prompts": torch.stack(values), "stats": stats}
        if path is not None:
            cache.save(path, entry)
        return entry
