"""Exponential moving average of the trainable parameters only (prompts, head)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from ..errors import check_number


class TrainableEMA(Callback):
    """An EMA of the parameters that train. Validation runs on the average, checkpoints store it as the
    model weights, and the module holds it once fitting ends, so the test (of the epoch chosen on
    validation, or of the last epoch) sees the weights that were validated. Training steps the raw values,
    which the checkpoint keeps beside for resuming.

    Unlike Lightning's ``EMAWeightAveraging`` it copies and updates only the trainable tensors (a few
    hundred thousand for prompt tuning) instead of the whole frozen backbone.

    Args:
        decay: Weight of the running average per optimizer step (0.999 ≈ the last 1,000 steps).
    """

    def __init__(self, decay: float = 0.999):
        self.decay = check_number("callbacks.ema.decay", decay, 0.0, 1.0, hint=" (0.999: about the last 1,000 steps)")
        self.average: list[torch.Tensor] | None = None
        self._raw: list[torch.Tensor] | None = None  # raw values during validation, or restored from a checkpoint
        self._names: list[str] = []
        self._params: list[torch.Tensor] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        named = [(n, p) for n, p in pl_module.named_parameters() if p.requires_grad]
        self._names, self._params = [n for n, _ in named], [p for _, p in named]
        if self.average is not None:  # resumed: the module was loaded with the average; give it its raw values
            self.average = [a.to(p.device, p.dtype) for a, p in zip(self.average, self._params)]
            self._copy(self._raw, self._params)
            self._raw = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # NOTE: on_train_start, not on_fit_start: the average must start from the prompts that
        # on_fit_start callbacks (prototype init) write, whatever the callback order.
        if self.average is None:
            self.average = [p.detach().clone() for p in self._params]

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Any, batch_idx: int) -> None:
        torch._foreach_lerp_(self.average, [p.detach() for p in self._params], 1.0 - self.decay)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.average is not None:  # None before training starts (sanity check) and outside fit
            self._raw = [p.detach().clone() for p in self._params]
            self._copy(self.average, self._params)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._raw is not None:
            self._copy(self._raw, self._params)
            self._raw = None

    def on_fit_end(self, trainer, pl_module) -> None:
        # Training is over: what follows (the test of the last epoch under data.protocol=final, or any
        # use of the module) sees the average, as validation and the checkpoints do.
        if self.average is not None:
            self._copy(self.average, self._params)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        for name, value in zip(self._names, self.average or []):
            checkpoint["state_dict"][name] = value.detach().clone()

    def state_dict(self) -> dict[str, Any]:
        raw = [p.detach().clone() for p in self._params]
        return {"average": self.average, "raw": raw, "decay": self.decay}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.average, self._raw = state_dict["average"], state_dict["raw"]

    @staticmethod
    @torch.no_grad()
    def _copy(src: list[torch.Tensor], dst: list[torch.Tensor]) -> None:
        for s, d in zip(src, dst):
            d.copy_(s)
