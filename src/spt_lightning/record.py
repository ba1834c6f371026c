"""What a run records when it ends: its results collected from the trainer and module, or, when it
failed or was interrupted, the error (written through ``results``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from . import __version__
from .errors import RunFolderError, SptError
from .results import RESULTS, finished, write_results


def collect(cfg: DictConfig, trainer: L.Trainer, module, datamodule, selection: dict[str, Any],
            test_metrics: list[dict], seconds: dict[str, float], precision: tuple[str, str],
            resumed_from: Path | None) -> dict[str, Any]:
    """The results of a finished run (``seconds``: fit, test, total)."""
    from .data.provenance import provenance

    init = init_stats(trainer)
    return {
        "status": "ok",
        "task": cfg.task.name,
        "group": cfg.task.get("group"),
        "protocol": datamodule.protocol,
        "splits": provenance(datamodule.task, datamodule.fraction, datamodule.shots, datamodule.shot_seed),
        "method": cfg.method.name,
        "prompt_length": module.model.prompt_length,
        "prompt_deep": bool(cfg.prompt.deep),
        "prompt_init": cfg.prompt.init if module.model.prompt_length else None,
        "backbone": cfg.backbone.arch,
        "img_size": cfg.backbone.img_size,
        "pretrain": cfg.pretrain.name,
        "precision": {"used": precision[0], "why": precision[1]},
        "seed": cfg.get("seed"),
        "parameters": module.parameter_counts(),
        "selection": selection,
        "test": {k.split("/", 1)[1]: v for k, v in (test_metrics[0] if test_metrics else {}).items()},
        "test_correct": module.test_correct if test_metrics else None,
        "init": init,
        # prompt init runs inside fit: training time is fit without it
        "timings": {"init": init.get("time", 0.0), "train": seconds["fit"] - init.get("time", 0.0),
                    "test": seconds["test"], "total": seconds["total"]},
        "wandb": wandb_mode(trainer.loggers),
        "resumed_from": None if resumed_from is None else str(resumed_from),
        "output_dir": str(Path(cfg.paths.output_dir)),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "versions": versions(),
    }


SELECT_RULES = ("last", "best_val")


def selected_epoch(trainer: L.Trainer, rule: str = "last") -> dict[str, Any]:
    """The epoch a run tests: ``best_val``, the epoch of best val accuracy (its checkpoint path; ``None`` when
    checkpointing is off), or ``last``, the last epoch (the weights in memory: path ``None``), as a study scores
    a grid point and tests its final runs. Without a validation split the last epoch either way."""
    last = _float(trainer.callback_metrics.get("val/acc1"))  # the last epoch's: how `tune` scores a grid point
    ckpt = next((cb for cb in trainer.checkpoint_callbacks if cb.monitor == "val/acc1"), None)
    if ckpt is None or not ckpt.best_model_path:
        return {**selection("last", trainer.max_epochs, trainer.current_epoch, last,
                            last, None), "path": None}
    best = rule == "best_val"
    epoch = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["epoch"] + 1 if best else None
    chosen = selection(rule, trainer.max_epochs, trainer.current_epoch, last, _float(ckpt.best_model_score), epoch)
    return {**chosen, "path": ckpt.best_model_path if best else None}


def selection(rule: str, epochs: int, last_epoch: int, last_val: float | None, best_val: float | None,
              best_epoch: int | None) -> dict[str, Any]:
    """results.json's ``selection`` under ``rule`` (epochs counted from 1), for a run and a pack's point alike."""
    epoch, val = (best_epoch, best_val) if rule == "best_val" else (last_epoch, last_val)
    return {"epoch": epoch, "epochs": epochs, "rule": rule, "val_acc1": val, "last_val_acc1": last_val,
            "best_val_acc1": best_val}


def wandb_mode(loggers: list) -> str | None:
    """``online`` / ``offline`` for a run logging to W&B (as decided by loggers.with_wandb_mode or
    WANDB_MODE), ``None`` without W&B."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            modes = (logger._wandb_init.get("mode"), os.environ.get("WANDB_MODE"))
            offline = logger._offline or any(m in ("offline", "dryrun", "disabled") for m in modes)
            return "offline" if offline else "online"
    return None


def init_stats(trainer: L.Trainer) -> dict[str, Any]:
    """What the prompt-init callback hands over for results.json's ``init``: the record of the callback that
    declares ``results_key = "init"`` (callbacks.PrototypeInit's ``stats``); ``{}`` without one."""
    return next((cb.results_record() for cb in trainer.callbacks if getattr(cb, "results_key", None) == "init"), {})


def _float(x: Any) -> float | None:
    return None if x is None else float(x)


def versions() -> dict[str, str]:
    """Code and library versions for results.json (the git commit when run from a checkout)."""
    import importlib.metadata as md

    out = {"spt_lightning": __version__}
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        if sha.returncode == 0:
            out["git"] = sha.stdout.strip()
    except OSError:
        pass
    for name in ("torch", "lightning", "timm", "hydra-core", "torchmetrics", "faiss-gpu", "faiss-cpu", "wandb"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def interrupted(error: BaseException) -> bool:
    """SIGTERM (a scheduler's stop), Ctrl-C (Lightning turns it into ``SystemExit(1)``)."""
    return isinstance(error, (SystemExit, KeyboardInterrupt))


def exit_code(error: BaseException) -> int:
    """The shell's convention for a run stopped by a signal (128 + its number), 1 for a failure; an exit
    that carries its own code keeps it (submitit's requeue exits 144 on its preemption signal, and its local
    controller restarts the job on that code only)."""
    if isinstance(error, SIGTERMException):
        return 143
    if isinstance(error, SystemExit) and isinstance(error.code, int) and error.code not in (0, 1):
        return error.code
    return 130 if interrupted(error) else 1


def record_outcome(cfg: DictConfig, error: BaseException) -> Path | None:
    """results.json with status ``failed`` or ``interrupted`` and the error, so that reports show the run;
    returns its path. Written only into a folder of the project's (its marker taken, or created in a new
    one): never for a refused folder, another tool's or one a live run holds, nor over a finished run's
    results.
    """
    from .runs import check_owned, take_marker

    output_dir = Path(cfg.paths.output_dir)
    if isinstance(error, RunFolderError) or finished(output_dir / RESULTS):
        return None
    try:
        check_owned(output_dir)
        take_marker(output_dir).close()
    except (RunFolderError, OSError):
        return None
    write_results(output_dir, {
        "status": "interrupted" if interrupted(error) else "failed",
        "error": f"{type(error).__name__}: {error}",
        "task": cfg.task.name,
        "group": cfg.task.get("group"),
        "method": cfg.method.name,
        "pretrain": cfg.pretrain.name,
        "prompt_length": cfg.prompt.length or 0,
        "seed": cfg.get("seed"),
        "output_dir": str(output_dir),
        "config": _resolved(cfg),
        "versions": versions(),
    })
    return output_dir / RESULTS


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config with its values (a failed run shows the lr it ran with); as written where a value cannot
    be resolved (the failure may be that value). A task whose classes are counted (``task=folder``) shows
    the count where its folder can be read, as the run's own results would: report sets the failed run
    beside its finished peers, not apart."""
    from .story import counted_classes

    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - any resolver error: keep the interpolations
        return OmegaConf.to_container(cfg, resolve=False)
    if config.get("task", {}).get("num_classes", 0) is None:
        with contextlib.suppress(SptError):  # the failure may be that folder
            config["task"]["num_classes"] = counted_classes(cfg)
    return config
