"""Run folders: whether a run may write into its folder, and where it continues from.

A folder holding a finished run (``results.json`` with status ``ok``) is never written into unless
``overwrite=true``. A folder holding an unfinished run with ``checkpoints/last.ckpt`` is continued
(``resume=auto``). ``resume=<run folder or .ckpt>`` continues that run in its own folder (a finished
one too, with ``overwrite=true``: training for more epochs).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from .errors import ConfigError, RunFolderError
from .results import RESULTS, read_results
from .settings import differences, neutral

RESUME_MODES = ("auto", "never")
LAST = Path("checkpoints") / "last.ckpt"
# What a run writes into its folder (Hydra's own log file aside, which only ever grows).
ARTEFACTS = (RESULTS, "checkpoints", "csv", "tensorboard", "wandb", ".hydra", "hpc_ckpt_*.ckpt")


def run_folder(resume: str, default: str) -> str:
    """The folder a run writes into: the resumed run's own, else ``default`` (a resolver of hydra.run.dir)."""
    if resume in RESUME_MODES or not resume:
        return default
    path = Path(resume).expanduser()
    if path.suffix == ".ckpt":  # <run>/checkpoints/<name>.ckpt
        return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    return str(path)


def prompt_tag(length: int | None) -> str:
    """``P10`` for 10 prompt tokens per layer, ``no_prompts`` for a method without (a resolver of run names)."""
    return "no_prompts" if length is None else f"P{length}"


for _name, _resolver in (("run_folder", run_folder), ("prompt_tag", prompt_tag)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


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
    own = OmegaConf.load(folder / SAVED_CONFIG)
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
    """A run's folder: whether this run may write into it (:meth:`inspect`, reads only) and its first
    write (:meth:`claim`: an earlier attempt's files cleared, the config saved)."""

    path: Path
    checkpoint: Path | None = None  # what the run continues from (None: a fresh start), once inspected
    stale: bool = False             # an earlier attempt's files to clear at the claim

    def inspect(self, cfg: DictConfig) -> RunFolder:
        """Refuse (raise) a folder this run must not write into, before anything is written; a run
        continued in place must have the settings it was started with."""
        self.checkpoint, self.stale = resume_point(self.path, cfg.resume, cfg.overwrite)
        if self.checkpoint is not None and cfg.resume == "auto":
            check_same_settings(cfg, self.path)
        return self

    def claim(self, cfg: DictConfig) -> None:
        """The run's first write (rank 0; other DDP ranks start once it has claimed the folder)."""
        from lightning.pytorch.utilities import rank_zero_only

        if rank_zero_only.rank == 0:
            if self.stale:
                clear(self.path)
            (self.path / SAVED_CONFIG).parent.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, self.path / SAVED_CONFIG)


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
