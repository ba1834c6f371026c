"""The OmegaConf resolvers that the package's configs use, registered once when the package is imported
(``spt_lightning/__init__.py``), so that any entry point composes the same configs."""

from __future__ import annotations

import functools
import secrets
from pathlib import Path

from omegaconf import OmegaConf

RESUME_MODES = ("auto", "never")


def run_folder(resume: str, default: str) -> str:
    """The folder a run writes into: the resumed run's own, else ``default`` (``hydra.run.dir``)."""
    if resume in RESUME_MODES or not resume:
        return default
    path = Path(resume).expanduser()
    if path.suffix == ".ckpt":  # <run>/checkpoints/<name>.ckpt
        return str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    return str(path)


def prompt_tag(length: int | None) -> str:
    """``P10`` for 10 prompt tokens per layer, ``no_prompts`` for a method without (run names)."""
    return "no_prompts" if length is None else f"P{length}"


@functools.cache
def run_id() -> str:
    """A random tag drawn once per process: the default run folder ends with it, so that two runs started in
    the same second (two shells, two SLURM jobs on a shared disk) never share a folder."""
    return secrets.token_hex(3)


def per_task(table, task: str, default):
    """A recipe's per-task value: ``table[<task without its benchmark>]`` (``vtab/dtd`` -> ``dtd``), else
    ``default`` (a task its authors did not tune, the demo)."""
    return table.get(task.rsplit("/", 1)[-1], default)


RESOLVERS = {"run_folder": run_folder, "prompt_tag": prompt_tag, "run_id": run_id, "per_task": per_task}
for _name, _resolver in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
