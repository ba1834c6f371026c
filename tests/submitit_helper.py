"""A callback for the submitit tests (not a test module): at the end of epoch ``SPT_TEST_REQUEUE_EPOCH`` it
sends its own process submitit's preemption signal (SIGUSR2), once (``SPT_TEST_REQUEUE_FLAG`` marks it done),
as a SLURM job that runs out of time gets it. Without those variables it does nothing, so a study with and
one without the signal have the same settings."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class RequeueOnce(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch, flag = os.environ.get("SPT_TEST_REQUEUE_EPOCH"), os.environ.get("SPT_TEST_REQUEUE_FLAG")
        if epoch is None or flag is None or trainer.current_epoch != int(epoch):
            return
        marker = Path(flag) / f"{Path(trainer.default_root_dir).name}.requeued"
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGUSR2)
