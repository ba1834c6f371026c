"""The Lightning datamodule shared by every task."""

from __future__ import annotations

import atexit
import copy
import functools
import logging
import multiprocessing as mp
import os
import signal
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import ConcatDataset, DataLoader, Dataset, RandomSampler, Subset

from ..errors import ConfigError, check_choice, check_number
from .datasets import ImageDataset, collate_skipping_none
from .families import family_of
from .transforms import TRANSFORMS, build_transforms

PROTOCOLS = ("select", "tune", "final")
CACHE_SHARE = 0.25  # data.cache_images=auto keeps decoded images when they take at most this share of free memory

log = logging.getLogger(__name__)


class EpochShuffle(RandomSampler):
    """A fresh permutation each epoch that depends on ``(seed, epoch)`` only, so a run resumed at epoch k
    draws the same order as an uninterrupted one.

    ``generator`` is the loader's: it draws the worker seeds (and so the random augmentations), and is
    re-seeded from ``(seed, epoch)`` too; it starts at the epoch the run starts from, since Lightning
    creates a resumed run's first iterator before it calls :meth:`set_epoch`. Under DDP Lightning
    replaces this sampler by its own ``DistributedSampler``, which is seeded by epoch too.
    """

    def __init__(self, data_source: Dataset, seed: int, epoch: int = 0):
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(epoch)

    def _seed(self) -> int:
        return self.seed * 1_000_003 + self.epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.generator.manual_seed(self._seed())

    def __iter__(self):
        order = torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(self._seed()))
        yield from order.tolist()


class TaskDataModule(L.LightningDataModule):
    """Train / val / test loaders for one task of the catalogue, under an evaluation protocol.

    Protocols (see PROTOCOL.md of the benchmarks): ``select`` trains on train, chooses the epoch on
    val and tests once; ``tune`` trains on train and validates on val, no test (hyperparameter search);
    ``final`` trains on train + val (VTAB: train800val200) and tests the last epoch.

    Args:
        task: The task config (name, family, num_classes, data location, transform name, ...).
        img_size: Input resolution of the backbone.
        mean: Normalisation mean of the pretrained weights.
        std: Normalisation std of the pretrained weights.
        batch_size: Per-device batch size.
        num_workers: Loader worker processes (0 loads in the main process); ``auto``: one per core, at
            most 8 (enough to keep a GPU fed with these recipes).
        pin_memory: Pin host memory for faster copies to the GPU.
        protocol: ``select``, ``tune`` or ``final``.
        fraction: Seeded part of the training set used (the paper's "amount of target data" study).
        seed: Seed of that part.
        shots: Few-shot training: ``shots`` images per class drawn from the training split (VIPAMIN's protocol,
            src/data/datasets/json_dataset.py L72-87: k per class at random from the train split; val and test
            unchanged; under ``final`` val is not added); ``None``: every image.
        shot_seed: The seed of that draw (fixed across the runs' seeds, as NOAH's drawn lists are).
        skip_corrupt: Skip unreadable images (a warning names each) instead of stopping.
        cache_images: Decode (and resize) every image once and keep it in memory as uint8, so that epochs
            only crop, flip and normalise; the same batches as without (the random steps are unchanged).
            ``auto``: when the decoded images fit in ``CACHE_SHARE`` of the available memory.
    """

    def __init__(
        self,
        task: dict[str, Any],
        img_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        batch_size: int = 32,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        protocol: str = "select",
        fraction: float = 1.0,
        seed: int = 0,
        shots: int | None = None,
        shot_seed: int = 0,
        skip_corrupt: bool = False,
        cache_images: bool | str = "auto",
    ):
        super().__init__()
        check_choice("data.protocol", protocol, PROTOCOLS)
        check_choice("task.transform", task.get("transform", "resize"), TRANSFORMS)
        check_number("data.fraction", fraction, 0, 1, low_open=True, high_open=False,
                     hint=": the part of the training set used")
        check_number("data.batch_size", batch_size, 1, integer=True)
        if shots is not None:
            check_number("data.shots", shots, 1, integer=True, hint=" training images per class, or null for all")
            if fraction < 1.0:
                raise ConfigError(f"data.shots={shots} with data.fraction={fraction}: choose one way to shrink the "
                                  "training split", "data.shots")
        self.shots, self.shot_seed = shots, check_number("data.shot_seed", shot_seed, 0, integer=True)
        self.task = dict(task)
        self.img_size, self.mean, self.std = img_size, tuple(mean), tuple(std)
        if num_workers == "auto":
            num_workers = min(8, len(os.sched_getaffinity(0)))
        check_number("data.num_workers", num_workers, 0, integer=True, hint=" or auto")
        self.batch_size, self.num_workers, self.pin_memory = batch_size, int(num_workers), pin_memory
        self.skip_corrupt = skip_corrupt
        self.cache_images = check_choice("data.cache_images", cache_images, (True, False, "auto"))
        self.protocol, self.fraction, self.seed = protocol, fraction, seed
        self.splits: dict[str, Dataset] = {}

    @property
    def has_val(self) -> bool:
        return self.protocol != "final"

    @property
    def has_test(self) -> bool:
        return self.protocol != "tune"

    def transforms(self, train: bool):
        return build_transforms(self.task.get("transform", "resize"), self.img_size, self.mean, self.std, train)

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            evaluate = self.transforms(train=False)
            transforms = {"train": self.transforms(train=True), "val": evaluate, "test": evaluate}
            self.splits = family_of(self.task).datasets(self.task, transforms, self.skip_corrupt)
            if self.cache_images:
                self._decode_once()

    def _decode_once(self) -> None:
        """Every split's images after the deterministic head of each transform it is read with (the train
        split: train transforms; val: eval, and train under ``final``; test: eval)."""
        train, evaluate = self.transforms(train=True), self.transforms(train=False)
        reads = [("train", train), ("val", evaluate), *([("val", train)] if self.protocol == "final" else []),
                 *([("test", evaluate)] if self.has_test else [])]
        reads = [(self.splits[name], t) for name, t in reads if isinstance(self.splits.get(name), ImageDataset)]
        if not reads:
            return
        need = sum(dataset.decoded_bytes(t) for dataset, t in reads)
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):  # a platform without it: auto keeps nothing
            available = 0
        if self.cache_images == "auto" and need > CACHE_SHARE * available:
            log.info("Images not kept decoded: about %.1f GB, more than %d%% of the %.1f GB available "
                     "(data.cache_images=true keeps them anyway)", need / 1e9, 100 * CACHE_SHARE, available / 1e9)
            return
        started = time.perf_counter()
        kept = sum(dataset.decode(t, threads=max(1, self.num_workers)) for dataset, t in reads)
        log.info("Images decoded once and kept in memory: %.0f MB in %.1f s (data.cache_images=%s)", kept / 1e6,
                 time.perf_counter() - started, self.cache_images)

    def training_set(self, transform) -> Dataset:
        """The images the model trains on under the protocol and fraction, with ``transform``."""
        self.setup("fit")
        parts = [_with_transform(self.splits["train"], transform)]
        if self.shots is not None:
            return _per_class(parts[0], self.shots, self.shot_seed)
        if self.protocol == "final":
            parts.append(_with_transform(self.splits["val"], transform))
        dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        return _seeded_subset(dataset, self.fraction, self.seed)

    def prototype_dataloader(self, fraction: float = 1.0, seed: int = 0, batch_size: int | None = None,
                             train_transforms: bool = False) -> DataLoader:
        """The training set in a fixed order (a seeded ``fraction`` of it), with eval or train transforms."""
        dataset = _seeded_subset(self.training_set(self.transforms(train=train_transforms)), fraction, seed)
        return self._loader(dataset, batch_size=batch_size)

    def _loader(self, dataset: Dataset, sampler=None, batch_size: int | None = None) -> DataLoader:
        if self.num_workers:
            _stop_workers_left_at_exit()
        # NOTE: no persistent workers: the loaders are made afresh each epoch (the trainer's
        # reload_dataloaders_every_n_epochs=1), and workers that lived on would carry their random state
        # across epochs, which a resumed run cannot restore.
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            generator=getattr(sampler, "generator", None),
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            collate_fn=collate_skipping_none if self.skip_corrupt else None,
            worker_init_fn=partial(_worker_init, rank=self.trainer.global_rank if self.trainer is not None else 0)
            if self.num_workers else None,
            # NOTE: fork, as Linux has it by default: inside a launcher's worker (joblib's loky) or from
            # Python 3.14 on, the default would pickle the dataset and its transforms to each worker.
            multiprocessing_context="fork" if self.num_workers and "fork" in mp.get_all_start_methods() else None,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.training_set(self.transforms(train=True))
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        return self._loader(dataset, EpochShuffle(dataset, self.seed, epoch))

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        # Under DDP each rank scores its own share once: Lightning's default sampler would pad the
        # shares to equal length with duplicates, which val/test accuracy would count.
        trainer = getattr(self, "trainer", None)
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            sampler = UnrepeatedDistributedSampler(dataset, trainer.world_size, trainer.global_rank, shuffle=False)
        return self._loader(dataset, sampler)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(self.splits["val"]) if self.has_val else []

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.splits["test"])


def _worker_init(worker_id: int, rank: int = 0) -> None:
    """Loader workers leave SIGTERM / SIGINT to the main process: a scheduler's or a terminal's signal to
    the whole process group then ends the run as `interrupted`, not as a worker's crash. Then Lightning's
    own worker seeding (seed_everything(workers=True)), which it adds only where no init function is set."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank)


@functools.cache
def _stop_workers_left_at_exit() -> None:
    """Workers ignore SIGTERM (above), and multiprocessing's exit handler stops daemonic children with SIGTERM and
    then joins them: a worker whose loader is still referenced at exit (an interrupted run's traceback holds it)
    waits for indices forever, and so would the run. Registered after that handler, this one runs first
    (atexit is last in, first out) and ends them, as the daemon flag promises."""
    atexit.register(_stop_daemonic_children)


def _stop_daemonic_children(grace: float = 0.5) -> None:
    """SIGTERM first (any other daemonic child of the process may clean up), SIGKILL for what ignores it
    after ``grace`` seconds. Torch's SIGCHLD handler, which raises when a worker dies, is set aside first:
    raised here, it would leave the other workers alive, and the exit hanging on them."""
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    children = [child for child in mp.active_children() if child.daemon]
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()


def _with_transform(dataset: Dataset, transform) -> Dataset:
    view = copy.copy(dataset)  # shares the file list / arrays; only the transform differs
    view.transform = transform
    return view


def _per_class(dataset: ImageDataset, shots: int, seed: int) -> Dataset:
    """``shots`` images of each class, drawn with ``seed`` (in the dataset's order within the draw)."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i in range(len(dataset)):
        by_class[dataset.label(i)].append(i)
    smallest = min(by_class, key=lambda c: len(by_class[c]))
    if shots > (have := len(by_class[smallest])):
        raise ConfigError(f"data.shots={shots}: class {smallest} has {have} training image(s); choose "
                          f"data.shots <= {have}", "data.shots")
    generator = torch.Generator().manual_seed(seed)
    keep = [members[j] for c in sorted(by_class) for members in [by_class[c]]
            for j in torch.randperm(len(members), generator=generator)[:shots].tolist()]
    return Subset(dataset, sorted(keep))


def _seeded_subset(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    if fraction >= 1.0:
        return dataset
    count = max(1, round(fraction * len(dataset)))
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count]
    return Subset(dataset, keep.sort().values.tolist())
