"""Run folders: whether a run may write into its folder, and where it continues from.

A folder is a run's only when it carries the project's marker (``.spt_run``, written with an exclusive
create when a run first claims the folder; a lock on it is held while the run is alive): only such a folder
is ever cleared or written into again, and a non-empty folder without it is refused. A folder holding a
finished run (``results.json`` with status ``ok``) is never written into unless ``overwrite=true``. A
folder holding an unfinished run with ``checkpoints/last.ckpt`` is continued (``resume=auto``).
``resume=<run folder or .ckpt>`` continues that run in its own folder (a finished one too, with
``overwrite=true``: training for more epochs). Checkpoints are read with ``weights_only=True``: loading
one never runs code.

``overwrite=true`` never loses a run: the earlier run's files are set aside in ``.replaced/`` when the new
run claims the folder, deleted once the new run has written its results, and put back, byte-identical,
when it fails or is interrupted at any step (a process killed outright leaves them there; the next run in
the folder puts them back before anything else).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from .errors import ConfigError, RunFolderError
from .resolvers import RESUME_MODES, run_folder
from .results import RESULTS, read_results
from .settings import differences, neutral, upgraded
from .trust import check_targets

try:  # advisory locks (POSIX); without them the marker's exclusive create still keeps two fresh runs apart
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

log = logging.getLogger(__name__)

LAST = Path("checkpoints") / "last.ckpt"
MARKER = ".spt_run"
REPLACED = ".replaced"  # an overwritten run's files while the run replacing it is under way
# What a run writes into its folder (Hydra's own log file aside, which only ever grows).
ARTEFACTS = (RESULTS, "checkpoints", "csv", "tensorboard", "wandb", ".hydra", "hpc_ckpt_*.ckpt", "prompt_analysis.*")


# Besides the keys that cannot change a result (settings.NEUTRAL), what a resumed run may change from the
# command line: the devices and loader processes it runs on, its loggers, and how long it trains.
RESUME_MAY_CHANGE = ("trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.accelerator",
                     "data.num_workers", "logger", "trainer.max_epochs", "recipe.epochs")
SAVED_CONFIG = Path(".hydra") / "config.yaml"


def _may_change(key: str) -> bool:
    return neutral(key) or any(key == k or key.startswith(f"{k}.") for k in RESUME_MAY_CHANGE)


def own_settings(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The config of a run resumed from its folder (``resume=<run folder or .ckpt>``): the one it was
    started with (``<run>/.hydra/config.yaml``), with the command line's ``overrides`` of keys it may change
    (``RESUME_MAY_CHANGE``, settings.NEUTRAL); an override that would change anything else is refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    folder = Path(run_folder(cfg.resume, ""))
    if not (folder / SAVED_CONFIG).is_file():
        raise RunFolderError(f"resume={cfg.resume}: {folder / SAVED_CONFIG} does not exist; pass the folder of a run "
                             f"of spt_lightning (or one of its checkpoints/*.ckpt)")
    own = upgraded(OmegaConf.load(folder / SAVED_CONFIG))  # a run of an earlier version: moved classes renamed
    check_targets(own, folder / SAVED_CONFIG)  # a downloaded folder's config builds only what ours do
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in ("resume", "overwrite") or key.startswith("hydra"):
            continue
        new, old = OmegaConf.select(cfg, key), OmegaConf.select(own, key)
        if isinstance(new, DictConfig) and isinstance(old, DictConfig):  # a group (task=...): the option chosen,
            name = next((k for k in ("name", "arch", "_target_") if k in new), None)  # not the keys set beside it
            if name is not None:
                key, new, old = f"{key}.{name}", new[name], old.get(name)
        if _may_change(key):
            OmegaConf.update(own, key, new, merge=False, force_add=True)
        elif _plain(new) != _plain(old):
            raise RunFolderError(f"resume={cfg.resume}: {key}={_plain(new)} would change the run, which was started "
                                 f"with {key}={_plain(old)}; nothing was written. Resume without it (the run "
                                 f"continues with its own settings), or start a new run.")
    with open_dict(own):
        own.resume, own.overwrite = cfg.resume, cfg.overwrite
    return own


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def check_same_settings(cfg: DictConfig, output_dir: Path) -> None:
    """``resume=auto`` continues an unfinished run in ``output_dir`` only with the settings it was started
    with (those a resumed run may change aside)."""
    if not (output_dir / SAVED_CONFIG).is_file():
        return
    before = OmegaConf.to_container(OmegaConf.load(output_dir / SAVED_CONFIG), resolve=True)
    changed = differences(before, OmegaConf.to_container(cfg, resolve=True), ignore=_may_change)
    if changed:
        raise RunFolderError(f"{output_dir} holds an unfinished run of other settings ({'; '.join(changed)}); nothing "
                             f"was written. Continue it with its own settings (resume={output_dir}), or pass "
                             f"overwrite=true to start it afresh.")


def resume_point(output_dir: Path, resume: str, overwrite: bool) -> tuple[Path | None, bool]:
    """The checkpoint this run continues from (``None``: a fresh start) and whether the folder must be
    cleared of an earlier attempt's files first. Refuses (raises) before anything is written."""
    if not isinstance(overwrite, bool):
        raise ConfigError(f"overwrite={overwrite!r}: expected true or false", "overwrite")
    if resume not in RESUME_MODES:
        ckpt = Path(resume).expanduser()
        if ckpt.suffix != ".ckpt":
            ckpt = ckpt / LAST
        if not ckpt.is_file():
            raise RunFolderError(f"resume={resume}: {ckpt} does not exist. Pass a run folder that holds "
                                 f"checkpoints/last.ckpt, or one of its .ckpt files.")
    else:
        ckpt = latest_checkpoint(output_dir) if resume == "auto" else None
    results_file = output_dir / RESULTS
    status = read_results(results_file)["status"] if results_file.is_file() else None
    if overwrite and resume in RESUME_MODES:  # start afresh
        return None, True
    if status == "ok" and not overwrite:  # overwrite with resume=<path>: train a finished run further
        raise RunFolderError(
            f"{output_dir} holds a finished run ({results_file}); nothing was written. Start the new run in "
            f"a folder of its own (leave hydra.run.dir / paths.output_dir at their defaults), or pass "
            f"overwrite=true to replace that run."
        )
    if ckpt is None and (found := latest_checkpoint(output_dir)) is not None:
        raise RunFolderError(
            f"{output_dir} holds an unfinished run ({found}); nothing was written. Continue it "
            f"with resume=auto, or pass overwrite=true to start it afresh."
        )
    if ckpt is not None:
        _check_checkpoint(ckpt)
    return ckpt, ckpt is None and any(any(output_dir.glob(name)) for name in ARTEFACTS)


@dataclass
class RunFolder:
    """A run's folder: whether this run may write into it (:meth:`inspect`, reads only), its first write
    (:meth:`claim`: the marker taken and locked, an earlier attempt's files cleared, the config saved) and
    the end of its tenure (:meth:`release`)."""

    path: Path
    checkpoint: Path | None = None  # what the run continues from (None: a fresh start), once inspected
    stale: bool = False             # an earlier attempt's files to clear at the claim
    expected: tuple[str, ...] = ()  # files the project put there before the run (a pack's pack.json)
    _marker: IO[str] | None = None  # the locked marker while the run holds the folder

    def inspect(self, cfg: DictConfig) -> RunFolder:
        """Refuse (raise) a folder this run must not write into, before anything is written: another tool's
        folder, one in use by a live run, a finished run without ``overwrite=true``; a run continued in
        place must have the settings it was started with. Writes only to put back a run that an overwrite
        killed outright had set aside."""
        check_owned(self.path, self.expected)
        if any((self.path / n).is_dir() for n in (REPLACED, f"{REPLACED}.partial")):
            restore(self.path)  # an overwrite killed outright: the run it was replacing comes back first
        self.checkpoint, self.stale = resume_point(self.path, cfg.resume, cfg.overwrite)
        if self.checkpoint is not None and cfg.resume == "auto":
            check_same_settings(cfg, self.path)
        return self

    def claim(self, cfg: DictConfig) -> None:
        """The run's first write (rank 0; other DDP ranks start once it has claimed the folder): the marker,
        created exclusively (or taken over from an earlier run of this project) and locked until
        :meth:`release`; then, the folder seen again under the lock, an earlier attempt's files cleared."""
        from lightning.pytorch.utilities import rank_zero_only

        if rank_zero_only.rank != 0:
            return
        check_owned(self.path, self.expected)  # the folder may have changed since inspect
        self._marker = take_marker(self.path)
        try:
            if resume_point(self.path, cfg.resume, cfg.overwrite) != (self.checkpoint, self.stale):
                raise RunFolderError(f"{self.path} changed while this run was starting (another run wrote into "
                                     f"it); nothing was written. Run again.")
            if self.stale:
                set_aside(self.path)
            (self.path / SAVED_CONFIG).parent.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, self.path / SAVED_CONFIG)
        except BaseException:
            self.release()
            raise

    def commit(self) -> None:
        """The run has written its results: the run it replaced (``overwrite=true``) is deleted."""
        if self._marker is not None and (self.path / REPLACED).is_dir():
            shutil.rmtree(self.path / REPLACED)

    def release(self) -> None:
        """The end of the run's tenure: a run that did not :meth:`commit` gives the folder back to the run it
        replaced (its files restored as they were); then the marker is unlocked (the folder stays the
        project's). The OS unlocks it too when the process dies."""
        if self._marker is None:
            return
        try:
            if (self.path / REPLACED).is_dir():
                restore(self.path)
        finally:
            self._marker.close()
            self._marker = None


def hydra_log_name() -> str | None:
    """The log file Hydra opened in the run folder before the run started (``<job name>.log``)."""
    from hydra.core.hydra_config import HydraConfig

    return f"{HydraConfig.get().job.name}.log" if HydraConfig.initialized() else None


def check_owned(path: Path, expected: tuple[str, ...] = ()) -> None:
    """Refuse a folder that is not empty and carries no marker (another tool's, a home folder, a project
    checkout), and a marked folder whose marker a live run holds locked. Reads only."""
    if not path.is_dir():
        if path.exists():
            raise RunFolderError(f"{path} is a file, not a folder; nothing was written. Choose another run folder.")
        return
    marker = path / MARKER
    if marker.is_file():
        holder = marker_holder(marker)
        if holder is not None:
            raise RunFolderError(f"{path} is in use by a live run ({holder}); nothing was written. Wait for it to "
                                 f"end, or run in another folder.")
        return
    ignored = {*expected, hydra_log_name()}
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if p.name not in ignored)
    if found:
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        legacy = (f" If it is a run folder of spt_lightning written before run folders carried a marker, "
                  f"`touch {marker}` lets runs write into it again." if (path / SAVED_CONFIG).is_file() else "")
        raise RunFolderError(f"{path} is not empty and is not a run folder of spt_lightning (no {MARKER}): it holds "
                             f"{shown}; nothing was written or removed. Run in a new or empty folder (leave "
                             f"hydra.run.dir / paths.output_dir at their defaults).{legacy}")


def _lock(file: IO[str]) -> bool:
    """An exclusive, non-blocking advisory lock on ``file`` (``False``: another process holds it)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # a file system without locks: the exclusive create alone keeps fresh runs apart
        return True
    return True


def marker_holder(marker: Path) -> str | None:
    """Who holds ``marker`` locked (``None``: no live run does), as its record says."""
    try:
        with marker.open() as file:
            if _lock(file):
                return None
            record = json.loads(file.read() or "{}")
    except (OSError, ValueError):
        return None
    return ", ".join(f"{k} {record[k]}" for k in ("run_id", "host", "pid", "since") if k in record) or "unknown"


def take_marker(path: Path) -> IO[str]:
    """Create ``path/.spt_run`` exclusively, or take over an earlier run's; lock it and record this run
    (run id, host, pid, start). Refuses a marker another live run holds."""
    from .resolvers import run_id

    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    except FileExistsError:
        fd = os.open(marker, os.O_RDWR)
    file = os.fdopen(fd, "r+")
    if not _lock(file):
        holder = marker_holder(marker)
        file.close()
        raise RunFolderError(f"{path} is in use by a live run ({holder}); nothing was written. Wait for it to end, "
                             f"or run in another folder.")
    file.seek(0)
    file.truncate()
    json.dump({"run_id": run_id(), "host": socket.gethostname(), "pid": os.getpid(),
               "since": time.strftime("%Y-%m-%d %H:%M:%S")}, file)
    file.flush()
    return file


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest of ``checkpoints/last.ckpt`` (end of an epoch) and the ``hpc_ckpt_*.ckpt`` that
    Lightning's SLURM environment saves when the job is preempted or runs out of time."""
    found = [p for p in (output_dir / LAST, *output_dir.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _check_checkpoint(path: Path) -> None:
    """A checkpoint to continue from: readable without running code (``weights_only``), Lightning's layout,
    and no callback state naming a file outside its checkpoint folder (Lightning deletes such files)."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # garbage, truncated, not a torch file, a pickle that would run code
        raise RunFolderError(f"{path} is not a checkpoint this project can read without running code "
                             f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); it was not "
                             f"loaded. Resume from a run's checkpoints/last.ckpt, or start a new run.") from err
    if not isinstance(checkpoint, dict) or not {"state_dict", "epoch"} <= checkpoint.keys():
        raise RunFolderError(f"{path} is not a Lightning checkpoint of spt_lightning (no state_dict / epoch)")
    for name, state in (checkpoint.get("callbacks") or {}).items():
        outside = _paths_outside(state) if isinstance(state, dict) else []
        if outside:
            raise RunFolderError(f"{path}: the state of callback {name.split('{')[0]} names {outside[0]}, outside its "
                                 f"checkpoint folder {state.get('dirpath')}; it was not loaded (Lightning would "
                                 f"delete that file). Start a new run.")


def _paths_outside(state: dict[str, Any]) -> list[str]:
    """The checkpoint paths of a ModelCheckpoint state that do not lie inside its own ``dirpath``."""
    dirpath = state.get("dirpath")
    paths = [state.get(k) for k in ("best_model_path", "kth_best_model_path", "last_model_path")]
    paths += list(state.get("best_k_models") or {})
    paths = [p for p in paths if isinstance(p, str) and p]
    if not paths:
        return []
    if not isinstance(dirpath, str) or not dirpath:
        return paths
    root = os.path.normpath(dirpath)
    return [p for p in paths if os.path.dirname(os.path.normpath(p)) != root]


def _artefacts(output_dir: Path) -> list[Path]:
    return [p for name in ARTEFACTS for p in output_dir.glob(name)]


def set_aside(output_dir: Path) -> None:
    """Move an earlier run's files into ``.replaced/`` (renames within the folder: nothing is copied; a
    process killed half-way leaves ``.replaced.partial/``, which :func:`restore` empties back)."""
    partial = output_dir / f"{REPLACED}.partial"
    partial.mkdir()
    for path in _artefacts(output_dir):
        path.rename(partial / path.name)
    partial.rename(output_dir / REPLACED)


def restore(output_dir: Path) -> None:
    """Put the files set aside back, byte-identical, once the replacing run's files are cleared."""
    stash, partial = output_dir / REPLACED, output_dir / f"{REPLACED}.partial"
    if stash.is_dir():
        clear(output_dir)
    else:  # set aside half-way: the new run has written nothing yet
        stash = partial
    for path in stash.iterdir():
        path.rename(output_dir / path.name)
    stash.rmdir()
    log.warning("%s: the run that overwrite=true was replacing there did not finish; the earlier run is back "
                "as it was", output_dir)


def clear(output_dir: Path) -> None:
    """Delete what an earlier run of this project wrote into ``output_dir`` (``overwrite=true`` or a fresh
    start), in a folder that carries the marker only; a symbolic link is removed, never followed."""
    if not (output_dir / MARKER).is_file():
        raise RunFolderError(f"{output_dir} carries no {MARKER}: nothing in it is removed")
    for path in _artefacts(output_dir):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
