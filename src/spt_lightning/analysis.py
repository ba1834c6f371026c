"""The observation SPT starts from, measured on your own runs: how close the prompts are to the patch
tokens beside them, per layer and epoch (``callbacks=prompt_analysis``).

On a fixed batch of validation images, for each prompted layer i, the prompts of layer i are compared
with the patch tokens that enter block i next to them (the prompted model's own forward):

- ``mi``: normalised mutual information between each prompt and its nearest token (cosine), averaged over
  the prompts. The D coordinates of the two vectors are D paired samples; their joint distribution is
  estimated with an equal-width 2-D histogram of ``ceil(sqrt(D / 5))`` bins per axis (about five samples
  per cell of a marginal), and MI is divided by ``sqrt(H(prompt) H(token))``: 1 when one vector is a
  monotone function of the other, near 0 when they are independent (a small positive bias of finite D).
- ``cos_nearest``: cosine similarity of each prompt to its nearest token, averaged over the prompts.
- ``cos_mean``: cosine similarity of each prompt to the mean token, averaged over the prompts.

Logged as ``analysis/<measure>/layer<i>`` to every logger and appended to ``prompt_analysis.csv`` in the
run folder (epoch 0: right after prompt init, before training); ``report`` draws them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from .errors import check_number

MEASURES = ("mi", "cos_nearest", "cos_mean")


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


def coordinate_mi(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Normalised MI of the paired coordinates of each row of ``a`` and ``b`` (``[M, D]`` each) → ``[M]``."""
    m, d = a.shape
    bins = max(2, math.ceil(math.sqrt(d / 5)))

    def quantise(x: torch.Tensor) -> torch.Tensor:
        lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)
        return ((x - lo) / (hi - lo).clamp_min(1e-12) * bins).long().clamp_(0, bins - 1)

    cells = quantise(a.double()) * bins + quantise(b.double())
    joint = torch.zeros(m, bins * bins, dtype=torch.float64).scatter_add_(1, cells, torch.ones_like(cells, dtype=torch.float64))
    joint = (joint / d).view(m, bins, bins)
    h_a, h_b, h_ab = _entropy(joint.sum(2)), _entropy(joint.sum(1)), _entropy(joint.view(m, -1))
    return ((h_a + h_b - h_ab) / (h_a * h_b).sqrt().clamp_min(1e-12)).float()


def similarity(prompts: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """The three measures of one layer: ``prompts [P, D]`` against ``tokens [T, D]``."""
    cos = F.normalize(prompts.float(), dim=-1) @ F.normalize(tokens.float(), dim=-1).T  # [P, T]
    nearest_cos, nearest = cos.max(1)
    mean_cos = F.cosine_similarity(prompts.float(), tokens.float().mean(0, keepdim=True), dim=-1)
    return {"mi": float(coordinate_mi(prompts, tokens[nearest]).mean()), "cos_nearest": float(nearest_cos.mean()),
            "cos_mean": float(mean_cos.mean())}


class PromptAnalysis(Callback):
    """Prompt–token similarity per prompted layer, at the start of training and after every epoch.

    Args:
        images: How many validation images (the first ones; training images when the protocol has no
            validation split) the measures use, the same at every epoch.
    """

    def __init__(self, images: int = 32):
        self.images = check_number("callbacks.prompt_analysis.images", images, 1, integer=True)
        self.batch: torch.Tensor | None = None
        self.rows: list[dict] = []

    def _fixed_batch(self, trainer: L.Trainer) -> torch.Tensor:
        dm = trainer.datamodule
        loader = dm.val_dataloader() if getattr(dm, "has_val", True) else dm.prototype_dataloader()
        chunks, n = [], 0
        for batch in loader:
            if batch is None:
                continue
            chunks.append(batch[0])
            n += len(batch[0])
            if n >= self.images:
                break
        return torch.cat(chunks)[: self.images]

    @torch.no_grad()
    def measure(self, model) -> list[dict[str, float]]:
        """One row per prompted layer: the prompts against the patch tokens entering that block."""
        was_training = model.training
        model.eval()
        try:
            sequences = model.block_sequences(self.batch.to(model.prompts.embeddings.device), model.prompts.num_layers)
        finally:
            model.train(was_training)
        rows = []
        for i, x in enumerate(sequences):
            tokens = x[:, model.patch_slice].reshape(-1, x.shape[-1])
            rows.append({"layer": i, **similarity(model.prompts.embeddings[i].detach(), tokens)})
        return rows

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        model = pl_module.model
        if model.prompts is None:
            return
        if self.batch is None:
            with torch.random.fork_rng():  # reading the batch must not shift training's random stream
                self.batch = self._fixed_batch(trainer)
        rows = [{"epoch": epoch, **row} for row in self.measure(model)]
        metrics = {f"analysis/{m}/layer{r['layer']}": r[m] for r in rows for m in MEASURES}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "prompt_analysis.csv"
            new = not path.exists()
            with path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["epoch", "layer", *MEASURES])
                if new:
                    writer.writeheader()
                writer.writerows(rows)
        self.rows += rows

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:  # not again when resuming
            self._record(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module, trainer.current_epoch + 1)
