"""The LightningModule: which parameters train, how they are optimised, what is measured."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from timm.optim import param_groups_weight_decay
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from .errors import SptError, check_number
from .models import PromptedViT
from .rng import rng_states, set_rng_states
from .schedules import warmup_cosine


DIVERGED = 10  # see diverged_epoch
# NOTE: the frozen backbone is in eval mode on purpose (PromptedViT.train pins it there).
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


class TrainingError(SptError):
    """Training cannot go on as configured (a non-finite loss, a checkpoint that does not fit)."""


def diverged_epoch(loss: torch.Tensor | float | None, num_classes: int) -> str | None:
    """A finite divergence: an epoch's mean cross-entropy above DIVERGED x that of a uniform guess, ln(C)
    (the model is confidently wrong; a run that learns nothing stays near ln(C)). What happened, or None."""
    chance = math.log(max(num_classes, 2))
    if loss is None or float(loss) <= DIVERGED * chance:
        return None
    return (f"the mean training loss of the epoch is {float(loss):.4g}, over {DIVERGED} x the loss of a uniform "
            f"guess (ln {num_classes} = {chance:.3g})")


def divergence(what: str, epoch: int, groups: list[dict[str, Any]], optimizer: Callable) -> str:
    """The message of a run that diverged: what happened, when, at which learning rates, and what to do."""
    lrs = sorted({f"{g['lr']:.3g}" for g in groups})
    return (f"{what} (epoch {epoch}, learning rate {', '.join(lrs)}): training diverged. Lower model.optimizer.lr "
            f"(now {getattr(optimizer, 'keywords', {}).get('lr')}) or check the data.")


class TrainableCheckpointModule(L.LightningModule):
    """Checkpoints that hold what the run set in ``model`` -- its trainable tensors and its prompts (written
    from the data even when they do not train) -- and the random states, which a resumed run restores; what
    stays frozen comes from its pretrained source."""

    def __init__(self):
        super().__init__()
        self.strict_loading = False  # the frozen tensors are not in the file
        self._resumed_rng: dict[str, Any] | None = None

    def _kept_keys(self) -> set[str]:
        return {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad or n.startswith("prompts.")}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self._kept_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        # The random state at the end of this epoch: a resumed run draws what an uninterrupted one would
        # (prompt dropout, augmentations in the main process). Lightning keeps none outside its fault-tolerant mode.
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        # NOTE: here, not in on_load_checkpoint: the sanity check between the two draws random numbers too.
        if self._resumed_rng is not None:
            set_rng_states(self._resumed_rng)
            self._resumed_rng = None


class PromptTuningModule(TrainableCheckpointModule):
    """Trains the prompts and head of a :class:`PromptedViT` (or everything, for full fine-tuning).

    Args:
        model: The prompted ViT, head sized for the task.
        num_classes: Classes of the task.
        optimizer: A partial optimizer (``torch.optim.AdamW``) completed with the parameter groups.
        param_groups: Per group (``prompts``, ``head``, ``backbone``, ``added``) overrides such as
            ``{"weight_decay": 0.0, "lr_scale": 1.0}``. Biases and norm weights never get weight decay.
        scheduler: A partial lr schedule completed with the optimizer, ``total_steps`` and ``max_epochs``
            (default: :func:`~spt_lightning.schedules.warmup_cosine`, one epoch of warm-up); stepped every
            optimizer step.
        finetune_backbone: Train every parameter (``method=full``); otherwise the backbone is frozen and a
            method (``PromptedViT.attach``) says what else trains besides prompts and head.
        attention: ``auto`` (eager on CPUs, fused on GPUs), ``fused`` or ``eager``; chosen again in
            ``setup``, once the device is known.
        compile: ``torch.compile`` the model's forward (in place, so parameter names and checkpoints
            are unchanged). The first steps pay the compilation.
    """

    def __init__(
        self,
        model: PromptedViT,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        param_groups: dict[str, dict[str, float]] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] = warmup_cosine,
        finetune_backbone: bool = False,
        attention: str = "auto",
        compile: bool = False,
    ):
        super().__init__()
        options = getattr(optimizer, "keywords", {})  # a partial optimizer: its lr and weight decay
        if "lr" in options:
            check_number("model.optimizer.lr", options["lr"], 0, low_open=True)
        if "weight_decay" in options:
            check_number("model.optimizer.weight_decay", options["weight_decay"], 0)
        for group, opts in (param_groups or {}).items():
            for option in ("lr_scale", "weight_decay"):
                if (opts or {}).get(option) is not None:
                    check_number(f"model.param_groups.{group}.{option}", opts[option], 0)
        if "warmup_epochs" in getattr(scheduler, "keywords", {}):
            check_number("model.scheduler.warmup_epochs", scheduler.keywords["warmup_epochs"], 0)
        model.set_attention(attention)
        self.model = model
        if not finetune_backbone:
            model.freeze_backbone()
        self.optimizer_factory = optimizer
        self.group_options = dict(param_groups or {})
        self.scheduler_factory = scheduler
        self.finetune_backbone = finetune_backbone
        self.attention = attention
        self.compile_model = compile
        self.num_classes = num_classes
        self.test_correct: str | None = None  # after a test: "1" per test image predicted right, else "0"
        accuracy = MetricCollection({"acc1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                                     "acc5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")})
        self.metrics = nn.ModuleDict({split: accuracy.clone(prefix=f"{split}/") for split in ("val", "test")})

    def setup(self, stage: str) -> None:
        self.model.set_attention(self.attention, self.trainer.strategy.root_device)
        if self.compile_model and self.model._compiled_call_impl is None:  # setup runs once per stage
            self.model.compile()

    # ---- what trains -------------------------------------------------------------------------
    def trainable_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Trainable parameters by group: ``prompts``, ``head``, ``backbone`` (the backbone's own tensors:
        all of them for full tuning, the biases for BitFit) and ``added`` (what a method added: LoRA,
        adapters, gates, key-value prompts)."""
        head = {id(p) for p in self.model.vit.get_classifier().parameters()}
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {"prompts": [], "head": [], "backbone": [], "added": []}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("prompts."):
                group = "prompts"
            elif id(p) in head:
                group = "head"
            else:
                group = "backbone" if name.removeprefix("vit.") in self.model.backbone_names else "added"
            groups[group].append((name, p))
        return {k: v for k, v in groups.items() if v}

    def parameter_counts(self) -> dict[str, int]:
        """Learnable parameters (with and without head) and the size of the backbone."""
        groups = self.trainable_groups()
        learnable = sum(p.numel() for ps in groups.values() for _, p in ps)
        head = sum(p.numel() for _, p in groups.get("head", []))
        return {"learnable": learnable, "learnable_without_head": learnable - head,
                "backbone": self.model.backbone_size}

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups: per trainable group its lr (``lr_scale``) and weight decay,
        split by timm's rule into tensors that decay and those that do not: biases, norms and other 1-D
        tensors, and what the ViT's ``no_weight_decay()`` exempts (position embedding, cls/register tokens).
        The prompt embeddings are one 3-D tensor: they decay with the prompts group's weight decay."""
        options = getattr(self.optimizer_factory, "keywords", {})
        base_lr, base_wd = options.get("lr", 1e-3), options.get("weight_decay", 0.0)
        exempt = [f"vit.{n}" for n in self.model.vit.no_weight_decay()]
        # (weight_decay=1 only marks the decaying tensors; each group's own value is set below)
        decaying = {id(p) for g in param_groups_weight_decay(self.model, 1.0, no_weight_decay_list=exempt)
                    if g["weight_decay"] for p in g["params"]}
        groups = []
        for name, params in self.trainable_groups().items():
            opts = dict(self.group_options.get(name) or {})
            lr = base_lr * opts.pop("lr_scale", 1.0)
            wd = opts.pop("weight_decay", None)
            wd = base_wd if wd is None else wd  # null: the optimizer's
            decay = [p for _, p in params if id(p) in decaying]
            no_decay = [p for _, p in params if id(p) not in decaying]
            groups += [
                {"params": ps, "lr": lr, "weight_decay": w, "name": f"{name}{suffix}", **opts}
                for ps, w, suffix in ((decay, wd, ""), (no_decay, 0.0, "_no_decay"))
                if ps
            ]
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (or the configured optimizer) over :meth:`param_groups`, and the configured schedule
        (by default a linear warm-up, then a half cosine to 0 at the last step), stepped every step."""
        optimizer = self.optimizer_factory(self.param_groups())
        schedule = self.scheduler_factory(optimizer, total_steps=self.trainer.estimated_stepping_batches,
                                          max_epochs=self.trainer.max_epochs or 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ---- steps ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was unreadable and skipped (data.skip_corrupt)
            return None
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        if not torch.isfinite(loss):
            self._diverged(f"the training loss is {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        what = diverged_epoch(self.trainer.callback_metrics.get("train/loss_epoch"), self.num_classes)
        if what:
            self._diverged(what)

    def _diverged(self, what: str) -> None:
        raise TrainingError(divergence(what, self.current_epoch, self.optimizers().param_groups, self.optimizer_factory))

    def _eval_step(self, split: str, batch) -> torch.Tensor | None:
        if batch is None:
            return None
        x, y = batch
        logits = self(x)
        self.log(f"{split}/loss", F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        metrics = self.metrics[split]
        metrics.update(logits, y)
        self.log_dict(metrics, prog_bar=True, batch_size=len(y))
        return logits

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_test_epoch_start(self) -> None:
        self._correct: list[torch.Tensor] = []

    def test_step(self, batch, batch_idx: int) -> None:
        logits = self._eval_step("test", batch)
        if logits is not None:
            self._correct.append((logits.argmax(1) == batch[1]).cpu())

    def on_test_epoch_end(self) -> None:
        # Which test images were right, in the test split's order: two runs on the same images can be
        # compared image by image (a paired test). Under DDP the order is the sampler's, so none is kept.
        single = self.trainer.world_size == 1 and self._correct
        self.test_correct = "".join(map(str, torch.cat(self._correct).int().tolist())) if single else None

    # ---- checkpoints hold trainable tensors only (TrainableCheckpointModule) --------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # strict_loading is off (the backbone is not in the file), so check the trainable part by hand.
        source = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
        state = checkpoint["state_dict"]
        own = dict(self.named_parameters())
        missing = sorted(self._kept_keys() - state.keys())
        wrong = [f"{k} {tuple(state[k].shape)} here {tuple(own[k].shape)}"
                 for k in sorted(self._kept_keys() & state.keys()) if state[k].shape != own[k].shape]
        if missing or wrong:
            raise TrainingError(
                f"{source} does not fit this model: "
                + (f"it lacks {len(missing)} trainable tensors (e.g. {missing[:3]}); " if missing else "")
                + (f"shapes differ: {'; '.join(wrong[:3])}; " if wrong else "")
                + "it was written for another method, prompt length or task. Resume with the settings it was "
                  "written with, or start a new run (resume=never, or another run folder)."
            )
        super().on_load_checkpoint(checkpoint)
