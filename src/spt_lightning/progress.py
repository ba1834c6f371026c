"""Plain one-line-per-epoch progress for non-interactive runs (SLURM files, CI), with an ETA."""

from __future__ import annotations

import logging
import sys
import time
import warnings

import lightning as L

from .console import ConsoleFilter


def quiet_console() -> None:
    """Each line once, in one format, and only what a user reads: Lightning's loggers print through the root
    logger Hydra set up (console and the run's log file) instead of their own ``INFO: ...`` handler; the
    console handlers get :class:`ConsoleFilter`; Lightning's advertising and a deprecation it triggers inside
    torch are dropped."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and not any(isinstance(f, ConsoleFilter) for f in handler.filters):
            handler.addFilter(ConsoleFilter())
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(getattr(f, "spt_tips", False) for f in tips.filters):
        drop = logging.Filter()
        drop.filter = lambda record: "Tip:" not in record.getMessage()
        drop.spt_tips = True
        tips.addFilter(drop)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def interactive() -> bool:
    return sys.stderr.isatty()


class EpochLines(L.Callback):
    """``epoch 3/10  train/loss 0.52  val/acc1 88.50%  31s  ETA 3m37s`` after each epoch's validation,
    and ``test 50% (1000/2000 images)  24s  ETA 24s`` at each quarter of the test pass."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()
        self.first_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        done = trainer.current_epoch + 1
        elapsed = time.perf_counter() - self.started
        per_epoch = elapsed / max(1, done - self.first_epoch)
        metrics = trainer.callback_metrics
        parts = [f"epoch {done}/{trainer.max_epochs}"]
        if "train/loss_epoch" in metrics:
            parts.append(f"train/loss {float(metrics['train/loss_epoch']):.4f}")
        if "val/acc1" in metrics:
            parts.append(f"val/acc1 {100 * float(metrics['val/acc1']):.2f}%")
        points = [f"{100 * float(v):.2f}%" for k, v in metrics.items() if k.startswith("val/acc1@")]
        if points:  # a pack of grid points (tune --pack K), in the pack's order
            parts.append(f"val/acc1 per point {' / '.join(points)}")
        parts += [f"{per_epoch:.0f}s", f"ETA {_duration(per_epoch * max(0, trainer.max_epochs - done))}"]
        print("  ".join(parts), flush=True)

    def on_test_start(self, trainer, pl_module) -> None:
        self.test_started, self.test_images, self.quarter = time.perf_counter(), 0, 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.is_global_zero or batch is None:
            return
        self.test_images += len(batch[1])
        total = trainer.num_test_batches[dataloader_idx]
        quarter = 4 * (batch_idx + 1) // max(1, total)
        if quarter > self.quarter:
            self.quarter = quarter
            elapsed = time.perf_counter() - self.test_started
            left = elapsed * (total - batch_idx - 1) / (batch_idx + 1)
            print(f"test {25 * quarter}% ({self.test_images} images)  {elapsed:.0f}s  ETA {_duration(left)}",
                  flush=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"

