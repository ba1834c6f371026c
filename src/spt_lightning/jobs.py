"""The task functions Hydra's launchers call (``-m`` sweeps, ``tune``): one run (:func:`run_job`) or a pack of
grid points (:func:`run_pack`), each :func:`guarded`: a failure is recorded and reported in one line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .errors import RunFolderError, SptError


def _traceback_to_log_file(error: BaseException) -> None:
    """The traceback goes to the run's log file only; the terminal gets the message."""
    record = logging.LogRecord(__name__, logging.ERROR, __file__, 0, "run stopped", None,
                               (type(error), error, error.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _quiet_worker_deaths(unraisable) -> None:
    """A signal to the whole process group can reach a loader worker that has not yet set it aside
    (data.datamodule._worker_init); torch then reports the worker's death from its SIGCHLD handler where it
    cannot raise, as a traceback on stderr. The run itself ends as interrupted; that report is dropped.
    A worker that dies otherwise still stops the run with torch's own error."""
    if not (isinstance(unraisable.exc_value, RuntimeError) and "is killed by signal" in str(unraisable.exc_value)):
        sys.__unraisablehook__(unraisable)


def run_job(cfg: DictConfig) -> float | None:
    """One run (``train``); returns what a Hydra sweeper optimises: the selected epoch's val accuracy."""
    from .record import record_outcome
    from .train import train

    results = guarded(cfg, lambda: train(cfg), lambda error: [record_outcome(cfg, error)],
                      f"continue with resume={cfg.paths.output_dir}")
    return results["selection"]["val_acc1"]


def run_pack(cfg: DictConfig) -> None:
    """The task function of a pack of grid points (``tune --pack K``): ``cfg`` is its first point's config
    in the pack's folder, whose ``pack.json`` lists the points. A failure is recorded in every point's folder."""
    from .packed_train import member_configs, train_packed
    from .packing import read_pack
    from .record import record_outcome

    members = read_pack(cfg.paths.output_dir)

    def record(error: BaseException) -> list:
        try:
            configs = member_configs(cfg, members)
        except SptError:  # a pack refused as such: nothing ran
            return []
        return [record_outcome(c, error) for c in configs]

    guarded(cfg, lambda: train_packed(cfg, members), record, "continue with the same tune command")


def guarded(cfg: DictConfig, work: Callable[[], Any], record: Callable[[BaseException], list], resume: str) -> Any:
    """``work()``; a failure or interruption is ``record``-ed (results.json with the error) and reported in one
    line, its traceback in the log file; the process exits as the shell expects (a multirun goes on)."""
    # Imported here, not above: --help, --cfg and a refused command line start without torch and Lightning.
    from .progress import quiet_console
    from .record import exit_code, interrupted

    quiet_console()
    sys.unraisablehook = _quiet_worker_deaths
    try:
        return work()
    except BaseException as error:
        recorded = [str(path) for path in record(error) if path]
        if not isinstance(error, RunFolderError):  # a refused folder's log file stays as it was
            _traceback_to_log_file(error)
        where = f" (recorded in {', '.join(recorded)})" if recorded else ""
        if interrupted(error):
            print(f"interrupted ({type(error).__name__}){where}; {resume}", file=sys.stderr, flush=True)
            sys.exit(exit_code(error))
        if not isinstance(error, SptError):
            raise
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # Hydra runs every other job, then exits non-zero with this message.
            raise SptError(f"{error}{where}") from None
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
