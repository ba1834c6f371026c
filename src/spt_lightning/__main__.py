"""``python -m spt_lightning [overrides]``: a thin Hydra entry point around :func:`train`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import check_overrides, renamed
from .errors import SptError
from .errors import RunFolderError

log = logging.getLogger(__name__)


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


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def run(cfg: DictConfig) -> float | None:
    from .record import record_outcome
    from .train import train

    results = guarded(cfg, lambda: train(cfg), lambda error: [record_outcome(cfg, error)],
                      f"continue with resume={cfg.paths.output_dir}")
    # The value a Hydra sweeper optimises: validation accuracy of the selected epoch.
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


def usage() -> str:
    """``--help``: the options of every config group (files starting with ``_`` are shared bases, not
    options), the examples, and where to see the composed config."""
    from importlib.resources import files

    root = files("spt_lightning.conf")
    groups = []

    def walk(folder, prefix: str) -> None:
        for child in sorted(folder.iterdir(), key=lambda c: c.name):
            if child.is_dir() and not child.name.startswith("_") and child.name != "hydra":
                options = sorted(c.name[:-5] for c in child.iterdir() if c.name.endswith(".yaml") and c.name[0] != "_")
                if options:
                    groups.append(f"  {prefix}{child.name}: {', '.join(options)}")
                walk(child, f"{prefix}{child.name}/")

    walk(root, "")
    help_cfg = hydra_help()
    return "\n".join([help_cfg["header"].rstrip(), "", "Config groups (group=option):", *groups, "",
                      help_cfg["footer"].rstrip(), ""])


def hydra_help() -> dict[str, str]:
    from importlib.resources import files

    from omegaconf import OmegaConf

    with (files("spt_lightning.conf") / "hydra" / "default.yaml").open() as f:
        return OmegaConf.to_container(OmegaConf.load(f).help)


def main() -> None:
    from hydra._internal.utils import get_args_parser

    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(usage())
        return
    sys.argv[1:] = renamed(sys.argv[1:])
    try:
        check_overrides(get_args_parser().parse_known_args(sys.argv[1:])[0].overrides)
    except SptError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    run()


if __name__ == "__main__":
    main()
