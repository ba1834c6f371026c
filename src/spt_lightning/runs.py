"""Run folders: whether a run may write into its folder, and where it continues from.

A folder holding a finished run (``results.json`` with status ``ok``) is never written into unless
``overwrite=true``. A folder holding an unfinished run with ``checkpoints/last.ckpt`` is continued
(``resume=auto``). ``resume=<run folder or .ckpt>`` continues that run in its own folder (a finished
one too, with ``overwrite=true``: training for more epochs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .errors import ConfigError, SptError

RESUME_MODES = ("auto", "never")
LAST = Path("checkpoints") / "last.ckpt"
# What a run writes into its folder (Hydra's own log file aside, which only ever grows).
ARTEFACTS = ("results.json", "checkpoints", "csv", "tensorboard", "wandb", ".hydra", "hpc_ckpt_*.ckpt")


class RunFolderError(SptError):
    """The run folder holds a run that this command must not touch, or the run to resume is not there."""


def read_results(path: Path) -> dict[str, Any]:
    """A ``results.json``; a file that is not one is an error naming it."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path} is not a readable results file ({err}); delete it or move it away") from err
    if not isinstance(results, dict) or "status" not in results:
        raise RunFolderError(f"{path} is not a results file of spt_lightning (no 'status'); delete it or move it away")
    return results


def run_folder(resume: str, default: str) -> str:
    """The folder a run writes into: the resumed run's own, else ``default`` (a resolver of hydra.run.dir)."""
    if resume in RESUME_MODES or not resume:
        return default
    path = Path(resume).expanduser()
    if path.suffix == ".ckpt":  # <run>/checkpoints/<name>.ckpt
        return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    return str(path)


if not OmegaConf.has_resolver("run_folder"):
    OmegaConf.register_new_resolver("run_folder", run_folder)


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
    results_file = output_dir / "results.json"
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


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest of ``checkpoints/last.ckpt`` (end of an epoch) and the ``hpc_ckpt_*.ckpt`` that
    Lightning's SLURM environment saves when the job is preempted or runs out of time."""
    found = [p for p in (output_dir / LAST, *output_dir.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _check_checkpoint(path: Path) -> None:
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # garbage, truncated, not a torch file
        raise RunFolderError(f"{path} is not a readable checkpoint ({type(err).__name__}: {err}). Resume from a "
                             f"run's checkpoints/last.ckpt, or start a new run.") from err
    if not isinstance(checkpoint, dict) or not {"state_dict", "epoch"} <= checkpoint.keys():
        raise RunFolderError(f"{path} is not a Lightning checkpoint of spt_lightning (no state_dict / epoch)")


def clear(output_dir: Path) -> None:
    """Delete what an earlier run wrote into ``output_dir`` (for ``overwrite=true`` or a fresh start)."""
    for path in (p for name in ARTEFACTS for p in output_dir.glob(name)):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
