"""Learning-rate schedules: ``model.scheduler`` is a partial node naming one of these (or any callable
``(optimizer, total_steps=..., max_epochs=...) -> LRScheduler``), stepped after every optimizer step."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, max_epochs: int,
                  warmup_epochs: float = 1.0) -> LRScheduler:
    """A linear warm-up from ``lr / warmup`` to ``lr`` over ``warmup_epochs`` (VPT's and SPT's schedule),
    then a half cosine to 0 at the last step. (``warmup_epochs`` is range-checked where the module is built,
    before anything is written.)"""
    warmup = round(warmup_epochs * total_steps / max(1, max_epochs))
    schedule = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
    if warmup:
        ramp = LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
        schedule = SequentialLR(optimizer, [ramp, schedule], milestones=[warmup])
    return schedule
