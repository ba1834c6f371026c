"""What the loggers need beyond Lightning: W&B online only when logged in, the run summary, a clean finish."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def with_wandb_mode(group: DictConfig | None) -> DictConfig | None:
    """``logger.wandb.offline: null`` → online when logged in, offline otherwise (never prompt for a login)."""
    wandb_cfg = (group or {}).get("wandb")
    if wandb_cfg is None or wandb_cfg.get("offline") is not None:
        return group
    netrc = Path.home() / ".netrc"
    logged_in = bool(os.environ.get("WANDB_API_KEY")) or (netrc.is_file() and "api.wandb.ai" in netrc.read_text())
    if not logged_in:
        log.info("W&B: not logged in, logging offline into %s (upload later with `wandb sync`)", wandb_cfg.save_dir)
    group = group.copy()
    group.wandb.offline = not logged_in
    return group


def summarise(loggers: list[Any], results: dict[str, Any]) -> None:
    """Final figures into the W&B run summary (test accuracy, parameter counts, init time)."""
    summary = {f"test/{k}": v for k, v in results["test"].items()}
    summary |= {f"params/{k}": v for k, v in results["parameters"].items()}
    summary |= {"selected_epoch": results["selection"]["epoch"], "init/time": results["timings"]["init"]}
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "summary") and hasattr(experiment.summary, "update"):
            experiment.summary.update(summary)


def finish(loggers: list[Any], failed: bool) -> None:
    """Close loggers that hold a live run (W&B), also when the run failed (marked as such)."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish(exit_code=1 if failed else 0)
