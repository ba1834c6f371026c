"""The observation SPT starts from, measured on your own runs: how close the prompts are to the patch
tokens beside them, per layer and epoch (``callbacks=prompt_analysis``).

On a fixed batch of validation images, for each prompted layer i, the prompts of layer i are compared
with the patch tokens that enter block i next to them (the prompted model's own forward):

- ``dependence``: how much a prompt and the token nearest to it share, averaged over the prompts. The D
  coordinates of the two vectors are D paired samples; the measure is their squared Spearman (rank)
  correlation, bias-corrected: ``((D - 1) rho^2 - 1) / (D - 2)``, whose mean is exactly 0 for independent
  vectors at any D (Var(rho) = 1 / (D - 1) under independence) and which is 1 when one vector is a
  monotone function of the other. Being a rank (copula) measure it ignores any monotone map of the
  coordinates and a few extreme channels (massive activations) move it little. For a Gaussian copula it
  is close to ``1 - 2^(-2 I)``, I the mutual information in bits (Linfoot's informational coefficient of
  correlation, squared), so it is a normalised MI; it sees monotone dependence only. The nearest token is
  chosen on the even coordinates and the dependence measured on the odd ones: choosing and measuring on
  the same coordinates would favour whichever of the many tokens correlates best by chance, a positive
  bias that grows with the number of tokens.
- ``nmi``: the normalised mutual information of the same pairs (a prompt and its nearest token, measured
  on the odd coordinates), the measure the paper's Figure 1 plots, as this project reads it: each vector's
  coordinates cut into ``NMI_BINS`` equal-frequency bins, ``NMI = 2 I(X; Y) / (H(X) + H(Y))`` of the two bin
  sequences (sklearn's ``normalized_mutual_info_score``, arithmetic mean). The paper's own text, which says how
  its NMI was computed, could not be read on this machine: its values (0.1-0.4, Figure 1) are what this
  estimator gives for moderately dependent vectors, not a check of it. Unlike ``dependence`` it sees any
  dependence, monotone or not, but it is biased upward at finite D (about ``(B - 1)^2 / (D ln B)`` for
  independent vectors: 0.05 at B = 10, D = 384) and not corrected; docs/paper.md ("NMI, as measured here")
  compares the two on synthetic vectors of known dependence.
- ``cos_nearest``: cosine similarity of each prompt to its nearest token, averaged over the prompts.
- ``cos_mean``: cosine similarity of each prompt to the mean token, averaged over the prompts.

Logged as ``analysis/<measure>/layer<i>`` to every logger and appended to ``prompt_analysis.csv`` in the
run folder (epoch 0: right after prompt init, before training); ``report`` draws them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from ..errors import check_number

MEASURES = ("dependence", "nmi", "cos_nearest", "cos_mean")
NMI_BINS = 10


def rank_dependence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Bias-corrected squared Spearman correlation of the paired coordinates of each row of ``a`` and ``b``
    (``[M, D]`` each, D >= 3) → ``[M]``: mean 0 for independent rows, 1 for monotone ones."""
    d = a.shape[-1]
    ranks = [x.double().argsort(-1).argsort(-1).double() for x in (a, b)]
    ra, rb = (r - (d - 1) / 2 for r in ranks)
    rho = (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1))
    return (((d - 1) * rho**2 - 1) / (d - 2)).float()


def binned_nmi(a: torch.Tensor, b: torch.Tensor, bins: int = NMI_BINS) -> torch.Tensor:
    """Normalised mutual information of the paired coordinates of each row of ``a`` and ``b`` (``[M, D]``),
    each row's coordinates cut into ``bins`` equal-frequency bins → ``[M]`` in [0, 1]."""
    m, d = a.shape
    codes = [(x.double().argsort(-1).argsort(-1) * bins // d) for x in (a, b)]  # bin of each coordinate
    joint = torch.zeros(m, bins * bins, dtype=torch.float64)
    joint.scatter_add_(1, codes[0] * bins + codes[1], torch.ones(m, d, dtype=torch.float64))
    joint = joint.view(m, bins, bins) / d
    pa, pb = joint.sum(2), joint.sum(1)
    outer = pa[:, :, None] * pb[:, None, :]
    mi = torch.where(joint > 0, joint * (joint / outer.clamp_min(1e-300)).log(), torch.zeros_like(joint)).sum((1, 2))
    entropy = [-(p * p.clamp_min(1e-300).log()).sum(1) for p in (pa, pb)]
    return (2 * mi / (entropy[0] + entropy[1])).clamp(0, 1).float()


def _nearest(prompts: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cos = F.normalize(prompts.float(), dim=-1) @ F.normalize(tokens.float(), dim=-1).T  # [P, T]
    return cos.max(1)


def similarity(prompts: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """The measures of one layer: ``prompts [P, D]`` against ``tokens [T, D]``."""
    nearest_cos, _ = _nearest(prompts, tokens)
    _, chosen = _nearest(prompts[:, 0::2], tokens[:, 0::2])  # chosen on the even coordinates, measured on the odd
    mean_cos = F.cosine_similarity(prompts.float(), tokens.float().mean(0, keepdim=True), dim=-1)
    odd_prompts, odd_tokens = prompts[:, 1::2], tokens[chosen][:, 1::2]
    return {"dependence": float(rank_dependence(odd_prompts, odd_tokens).mean()),
            "nmi": float(binned_nmi(odd_prompts, odd_tokens).mean()),
            "cos_nearest": float(nearest_cos.mean()), "cos_mean": float(mean_cos.mean())}


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
