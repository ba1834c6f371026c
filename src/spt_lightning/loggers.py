"""What the loggers need beyond Lightning: W&B online only when logged in, the run summary, a clean finish."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, open_dict

from .console import CONSOLE
from .files import home_relative

log = logging.getLogger(__name__)


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning deletes a metrics.csv it finds; a resumed run continues it (its columns first)
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class CSVLogger(LightningCSVLogger):
    """Lightning's CSV logger, except that a run resumed in its folder appends to its ``metrics.csv``
    instead of deleting the rows of its earlier epochs (a fresh start clears the folder first)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_logged_in() -> bool:
    """Whether wandb has credentials for its configured host (any host: ``wandb login --host ...``, a key in
    its settings, a netrc, ``WANDB_API_KEY``), by wandb's own check; never prompts, no network."""
    import wandb
    from wandb.sdk import wandb_setup

    # NOTE: silent, or wandb's "logged in as <user>" line asks the server for the user name (seconds, or
    # minutes on a node without internet). A wandb without wandb_setup.singleton() is called as it is.
    settings = wandb_setup.singleton().settings if hasattr(wandb_setup, "singleton") else None
    silent = settings.silent if settings else None
    try:
        if settings:
            settings.silent = True
        return bool(wandb.login(prompt=False, verify=False))
    except TypeError:  # wandb before `prompt=`: its credentials lookup for the configured host
        return wandb.api.api_key is not None
    finally:
        if settings:
            settings.silent = silent


def wandb_server(timeout: float = 5.0) -> str | None:
    """Why W&B's server cannot be reached (``None``: it accepts a connection), within ``timeout`` seconds
    whatever the name lookup does: the configured host (``WANDB_BASE_URL``, ``wandb login --host``), or the
    HTTPS proxy that wandb would go through."""
    import os
    import socket
    import threading
    from urllib.parse import urlsplit

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = proxy or os.environ.get("WANDB_BASE_URL") or _wandb_base_url()
    parts = urlsplit(url if "//" in url else f"//{url}")
    host, port = parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(f"{host}:{port}: {err}")

    thread = threading.Thread(target=probe, daemon=True)  # a stuck name lookup is left behind, not waited for
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:.0f} s"


def _wandb_base_url() -> str:
    from wandb.sdk import wandb_setup

    settings = wandb_setup.singleton().settings if hasattr(wandb_setup, "singleton") else None
    return str(getattr(settings, "base_url", None) or "https://api.wandb.ai")


def with_wandb_mode(group: DictConfig | None) -> DictConfig | None:
    """``logger.wandb.offline: null`` → online when logged in and the server answers, offline otherwise
    (one line says which and why; never a prompt for a login, never a wait of more than seconds)."""
    wandb_cfg = (group or {}).get("wandb")
    if wandb_cfg is None or wandb_cfg.get("offline") is not None:
        return group
    unreachable = wandb_server() if (logged_in := wandb_logged_in()) else None
    offline = f"logging offline into {wandb_cfg.save_dir} (upload later with `wandb sync`)"
    if not logged_in:
        log.info("W&B: not logged in, %s", offline, extra=CONSOLE)
    elif unreachable:
        log.warning("W&B: logged in, but the server cannot be reached (%s): %s", unreachable, offline)
    else:
        log.info("W&B: logged in, logging online", extra=CONSOLE)
    group = group.copy()
    with open_dict(group):
        # wandb.init's own mode, not Lightning's `offline` (which sets WANDB_MODE after wandb has read it,
        # and wandb warns): offline, wandb never asks for a key
        group.wandb.offline = False
        if not logged_in or unreachable is not None:
            group.wandb.mode = "offline"
    return group


class WandbRun(WandbLogger):
    """Lightning's W&B logger, offline through wandb.init's own ``mode`` when ``offline=True`` (Lightning only
    sets WANDB_MODE, which a wandb session already set up in the process ignores, and then asks for a key),
    and without the ``anonymous`` setting Lightning always passes (wandb warns that it has no effect)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self._offline:
            self._wandb_init["mode"] = "offline"
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


def continue_wandb_run(cfg: DictConfig, output_dir: Path) -> None:
    """A resumed run logs into the W&B run it started (its id, from the run folder's ``wandb/*run-*-<id>``)."""
    node = (cfg.get("logger") or {}).get("wandb")
    if node is None or node.get("id") is not None:
        return
    earlier = sorted((output_dir / "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    if earlier:
        with open_dict(node):
            node.id, node.resume = earlier[-1].name.rsplit("-", 1)[1], "allow"


def summarise(loggers: list[Any], results: dict[str, Any]) -> None:
    """Final figures into the W&B run summary: the test accuracy, ``val/acc1`` of the *selected* epoch (not
    the last one logged), parameter counts, init time; the run's row as a table and ``results.json`` as an
    artifact (the checkpoints too with ``logger.wandb.log_model=true``: Lightning's own upload). Accuracies
    are fractions (0-1) in every file and dashboard; text for people shows them in %."""
    summary = {f"test/{k}": v for k, v in results["test"].items()}
    summary |= {f"params/{k}": v for k, v in results["parameters"].items()}
    summary |= {"selected_epoch": results["selection"]["epoch"], "init/time": results["timings"]["init"]}
    if results["selection"].get("val_acc1") is not None:
        summary["val/acc1"] = results["selection"]["val_acc1"]
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        import json

        import wandb

        experiment = logger.experiment
        experiment.summary.update(summary)
        row = {"task": results["task"], "method": results["method"], "pretrain": results.get("pretrain"),
               "prompt_length": results.get("prompt_length"), "seed": results.get("seed"),
               "val_acc1": results["selection"].get("val_acc1"), "test_acc1": results["test"].get("acc1")}
        experiment.log({"results": wandb.Table(columns=list(row), data=[list(row.values())])})
        artifact = wandb.Artifact(f"results-{experiment.id}", type="results")
        with artifact.new_file("results.json") as f:
            f.write(json.dumps(home_relative(results), indent=2, default=str))
        experiment.log_artifact(artifact)


def finish(loggers: list[Any], failed: bool) -> None:
    """Close loggers that hold a live run (W&B), also when the run failed (marked as such)."""
    for logger in loggers:
        experiment = getattr(logger, "_experiment", None)
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish(exit_code=1 if failed else 0)
