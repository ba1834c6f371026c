"""The learning rate of every parameter group at every step, to every logger."""

from __future__ import annotations

from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger


class LearningRates(LearningRateMonitor):
    """Lightning's LearningRateMonitor, idle in a run without loggers (instead of refusing to start); on W&B
    it also makes ``epoch`` the x-axis of every per-epoch chart."""

    def on_train_start(self, trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                for pattern in ("val/*", "train/loss_epoch", "analysis/*"):
                    logger.experiment.define_metric(pattern, step_metric="epoch")

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer, *args, **kwargs) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
