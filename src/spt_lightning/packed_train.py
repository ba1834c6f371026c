"""``train_packed(cfg, members)``: K grid points of one task trained in one pass (``tune --pack K``), each
point ending as its own run would: its folder with ``results.json``, the selected epoch's checkpoint and its
``csv/metrics.csv``, which ``tune`` and ``report`` read as they read an unpacked run's.

One frozen backbone and one data stream serve all points (``models.packed``: the batch is repeated K
times, rows k*B..(k+1)*B see point k's prompts and head). Per point, as in its own run: the optimizer
groups (the unpacked module's, so one rule sets lr and weight decay), the schedule, the val accuracy
every epoch, the selected epoch (as ``select_epoch`` names it, through the run's own ``record.selection``),
the best-val checkpoint (an earlier epoch winning a tie, as Lightning's ModelCheckpoint), and a divergence
that fails that point only. The prototypes are computed once and
written into every point's prompts. The pack's own folder holds what resumes it (``checkpoints/last.ckpt``:
every point's tensors, the optimizer, the schedule and the selection so far) and the loggers' output,
where point k's metrics are named ``<metric>@<label>`` (one W&B run per pack, a curve per point).

Points are the same runs as unpacked up to floating-point rounding: the backbone runs on K x B rows instead
of B, and a kernel may tile (so round) another batch size differently, so only fp32 tolerance is promised
(tested); on this project's CPU the demo's packed points came out bit-identical (benchmarks/README.md).
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf, open_dict

from .build import Run, build_module, build_run
from .config import check_config
from .console import CONSOLE
from .errors import SptError
from .loggers import CSVLogger, finish
from .models.packed import PackedViT, replica_groups, replica_losses
from .module import PromptTuningModule, TrainableCheckpointModule, TrainingError, divergence, diverged_epoch
from .packing import PACK, why_not
from .record import collect, selection
from .results import format_summary, write_results
from .runs import RunFolder
from .settings import upgraded
from .story import counted_classes, fit, settled, tell
from .trust import check_targets

log = logging.getLogger(__name__)


class PackError(SptError):
    """A pack of grid points that cannot be trained together."""


class PackedModule(TrainableCheckpointModule):
    """The points' :class:`PromptTuningModule` s (built as their own runs would build them, sharing one
    model) trained as one :class:`PackedViT`."""

    def __init__(self, members: list[PromptTuningModule], labels: list[str]):
        super().__init__()
        self.model = PackedViT([m.model for m in members])
        self.members = list(members)  # (a plain list: their shared model is not a second set of parameters)
        self.labels = labels
        self.val_metrics = torch.nn.ModuleList(m.metrics["val"] for m in members)
        # Per point: the selected epoch so far, the last epoch's val acc1, why it failed.
        self.best: list[dict[str, Any] | None] = [None] * len(members)
        self.last_val: list[float | None] = [None] * len(members)
        self.failed: list[str | None] = [None] * len(members)

    def setup(self, stage: str) -> None:
        first = self.members[0]
        self.model.set_attention(first.attention, self.trainer.strategy.root_device)
        if first.compile_model and self.model._compiled_call_impl is None:
            self.model.compile()

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [g for k, m in enumerate(self.members)
                  for g in replica_groups(self.model, k, m.param_groups(), m.model, f"@{self.labels[k]}")]
        first = self.members[0]  # the points share the optimizer's other options and the schedule
        optimizer = first.optimizer_factory(groups)
        schedule = first.scheduler_factory(optimizer, total_steps=self.trainer.estimated_stepping_batches,
                                           max_epochs=self.trainer.max_epochs or 1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _fail(self, k: int, what: str) -> None:
        groups = [g for g in self.optimizers().param_groups if g["name"].endswith(f"@{self.labels[k]}")]
        self.failed[k] = divergence(what, self.current_epoch, groups, self.members[k].optimizer_factory)
        log.warning("Point %s stopped: %s", self.labels[k], self.failed[k])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if batch is None:
            return None
        x, y = batch
        losses = replica_losses(self.model(x), y)
        for k, (loss, finite) in enumerate(zip(losses, torch.isfinite(losses).tolist())):
            if self.failed[k] is None and not finite:
                self._fail(k, f"the training loss is {loss.item()} at step {self.global_step}")
            if self.failed[k] is None:
                self.log(f"train/loss@{self.labels[k]}", loss, on_step=True, on_epoch=True, batch_size=len(y))
        alive = [k for k, f in enumerate(self.failed) if f is None]
        if not alive:
            raise TrainingError(f"every point of the pack diverged: {'; '.join(self.failed)}")
        # (a failed point's rows stay its own: every op of the backbone is per image)
        return losses[alive].sum()

    def on_train_epoch_end(self) -> None:
        for k, label in enumerate(self.labels):
            what = diverged_epoch(self.trainer.callback_metrics.get(f"train/loss@{label}_epoch"),
                                  self.members[k].num_classes)
            if what and self.failed[k] is None:
                self._fail(k, what)

    def validation_step(self, batch, batch_idx: int) -> None:
        if batch is None:
            return
        x, y = batch
        for k, logits in enumerate(self.model(x)):
            self.log(f"val/loss@{self.labels[k]}", F.cross_entropy(logits, y), batch_size=len(y))
            self.val_metrics[k].update(logits, y)

    def on_validation_epoch_end(self) -> None:
        for k, metrics in enumerate(self.val_metrics):
            values = metrics.compute()
            metrics.reset()
            self.log_dict({f"{name}@{self.labels[k]}": value for name, value in values.items()})
            if self.trainer.sanity_checking or self.failed[k] is not None:
                continue
            acc = float(values["val/acc1"])
            self.last_val[k] = acc
            if self.best[k] is None or acc > self.best[k]["val_acc1"]:
                state = {f"model.{n}": p.detach().cpu().clone() for n, p in self.model.replica_parameters(k).items()}
                self.best[k] = {"epoch": self.current_epoch, "global_step": self.global_step, "val_acc1": acc,
                                "state_dict": state}

    # ---- the pack's checkpoint: trainable tensors, random states (the base class), the selection so far
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["packed"] = {"labels": self.labels, "best": self.best, "last_val": self.last_val,
                                "failed": self.failed}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        packed = checkpoint.get("packed") or {}
        if packed.get("labels") != self.labels:
            raise TrainingError(f"{getattr(self._trainer, 'ckpt_path', None)} is not this pack's checkpoint (points "
                                f"{packed.get('labels')}, here {self.labels}); delete the pack folder to start afresh")
        self.best, self.last_val, self.failed = packed["best"], packed["last_val"], packed["failed"]
        super().on_load_checkpoint(checkpoint)


def member_configs(cfg: DictConfig, members: list[dict[str, Any]]) -> list[DictConfig]:
    """Each point's config, as planned by the study, writing into its own folder."""
    def placed(value: Any, folder: str) -> Any:  # the study planned them in "<run>", a placeholder folder
        if isinstance(value, dict):
            return {k: placed(v, folder) for k, v in value.items()}
        if isinstance(value, list):
            return [placed(v, folder) for v in value]
        return folder + value[len("<run>"):] if isinstance(value, str) and value.startswith("<run>") else value

    configs = []
    for m in members:
        reason = why_not(m["config"])
        if reason:
            raise PackError(f"{m['folder']} cannot be packed: {reason}; run it with --pack 1")
        planned = upgraded(m["config"])  # a pack planned by an earlier version: moved classes renamed
        check_targets(planned, Path(cfg.paths.output_dir) / PACK)
        config = OmegaConf.create(placed(planned, m["folder"]))
        with open_dict(config):
            config.task.num_classes = cfg.task.num_classes  # task=folder: counted once, in the pack
        configs.append(config)
    return configs


def train_packed(cfg: DictConfig, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Train the points of ``members`` (``packing.write_pack``'s list) as one pack whose own folder is
    ``cfg.paths.output_dir``; ``cfg`` is the first point's config there. Returns each point's results.
    The pack tells the run's story (``story.py``) once, for K models: its own part fits them and then
    writes each point's folder as the point's own run would."""
    # Everything that can be refused is refused before anything is written.
    check_config(cfg)
    cfg = settled(cfg, {"task.num_classes": counted_classes(cfg),  # task=folder: counted once, in the pack
                        "trainer.devices": 1 if cfg.trainer.devices == "auto" else cfg.trainer.devices})
    configs = member_configs(cfg, members)
    labels = [m["label"] for m in members]
    pack = RunFolder(Path(cfg.paths.output_dir), expected=(PACK,)).inspect(cfg)  # tune wrote pack.json
    points = [RunFolder(Path(c.paths.output_dir)).inspect(c) for c in configs]
    held = [str(p.path) for p in points if p.checkpoint is not None]
    if held:
        raise PackError(f"{', '.join(held)} hold(s) an unfinished run of its own; continue it unpacked (--pack 1)")
    modules = []

    def build(precision: str) -> Run:  # the first point's run, built as its own (the same random draws)
        run = build_run(cfg, precision, selects=False)
        # the other points' modules over the same model (they draw nothing): their groups and checks
        modules[:] = [run.module, *(build_module(c, run.module.model, run.method) for c in configs[1:])]
        if not run.datamodule.has_val or run.datamodule.has_test:
            raise PackError(f"a pack trains grid points (protocol tune: selected on val, never tested); "
                            f"data.protocol={run.datamodule.protocol} does not fit")
        return run

    def own_part(run: Run, precision: tuple[str, str], started: float) -> list[dict[str, Any]]:
        packed = PackedModule(modules, labels)
        log.info("Training %d grid points in one pack (%s), precision %s", len(labels), ", ".join(labels),
                 precision[0], extra=CONSOLE)
        failed = True
        try:
            fit_time = fit(run, packed, pack.checkpoint)
            failed = False
        finally:
            finish(run.trainer.loggers, failed)
        seconds = {"fit": fit_time, "test": 0.0, "total": time.perf_counter() - started}
        return [_finish_point(k, config, folder, packed, run.trainer, run.datamodule, seconds, precision, pack)
                for k, (config, folder) in enumerate(zip(configs, points))]

    return tell(cfg, pack, build, own_part)


def _finish_point(k: int, cfg: DictConfig, folder: RunFolder, packed: PackedModule, trainer: L.Trainer, datamodule,
                  seconds: dict[str, float], precision: tuple[str, str], pack: RunFolder) -> dict[str, Any]:
    """Point k's folder as its own run leaves it: config, selected checkpoint, metrics, results.json."""
    from .record import record_outcome

    if packed.failed[k] is not None or packed.best[k] is None:
        record_outcome(cfg, TrainingError(packed.failed[k] or "no validation epoch ran"))
        return {"status": "failed", "error": packed.failed[k]}
    folder.claim(cfg)
    try:
        results = _write_point(k, cfg, folder, packed, trainer, datamodule, seconds, precision, pack)
        folder.commit()
        return results
    finally:
        folder.release()


def _write_point(k: int, cfg: DictConfig, folder: RunFolder, packed: PackedModule, trainer: L.Trainer, datamodule,
                 seconds: dict[str, float], precision: tuple[str, str], pack: RunFolder) -> dict[str, Any]:
    best = packed.best[k]
    checkpoint = folder.path / "checkpoints" / f"epoch{best['epoch']:03d}.ckpt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**best, "pytorch-lightning_version": L.__version__, "packed_in": str(pack.path)}, checkpoint)
    _split_metrics(trainer, pack.path, folder.path, packed.labels[k])
    chosen = selection(cfg.select_epoch, trainer.max_epochs, trainer.current_epoch, packed.last_val[k],
                       best["val_acc1"], best["epoch"] + 1)
    results = collect(cfg, trainer, packed.members[k], datamodule, chosen, [], seconds, precision, pack.checkpoint)
    results["packed"] = {"folder": str(pack.path), "points": len(packed.labels), "label": packed.labels[k],
                         "timings": "the pack's, shared by its points"}
    write_results(folder.path, results)
    print(format_summary(results), flush=True)
    return results


def _split_metrics(trainer: L.Trainer, pack: Path, point: Path, label: str) -> None:
    """The point's rows of the pack's ``metrics.csv``, its ``@label`` suffix dropped: the file its own
    run's CSV logger would have written (the curves ``report`` draws)."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
    if logger is None or not Path(logger.log_dir, "metrics.csv").is_file():
        return
    source = Path(logger.log_dir, "metrics.csv")
    with source.open(newline="") as f:
        rows = list(csv.DictReader(f))
    suffix = f"@{label}"
    # Lightning names a metric logged per step and per epoch <name>_step and <name>_epoch
    renamed = {c: c.replace(suffix, "") for c in (rows[0] if rows else {})
               if "@" not in c or any(c.endswith(suffix + end) for end in ("", "_step", "_epoch"))}
    own = [c for c in renamed if c not in ("epoch", "step")]
    target = point / source.relative_to(pack)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(renamed.values())
        writer.writerows([r[c] for c in renamed] for r in rows if any(r[c] != "" for c in own))
