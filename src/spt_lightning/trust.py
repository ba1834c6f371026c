"""What a file the user did not write may bring into a run, checked before it is used.

A run folder's ``.hydra/config.yaml`` (``resume=<folder>``), a pack's ``pack.json`` and a study's
``hyperparameters.csv`` (``tune --chosen``) can come from someone else. Hydra's ``instantiate`` builds
every ``_target_`` of a config, so a config from such a file may name only the objects this project's own
configs are made of (:func:`check_targets`); a CSV of chosen hyperparameters may set only plain values of
existing keys (:func:`check_plain_choice`). Pickled data is read by :func:`load_numpy_pickle`, which
rebuilds numpy arrays and nothing else. docs/security.md says what each file can and cannot do.
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import SptError

# Where the classes a config may build live: this package, Lightning's callbacks, loggers, strategies and
# plugins, timm, torch's optimisers and schedules, peft.
TARGET_PACKAGES = ("spt_lightning.", "lightning.pytorch.callbacks.", "lightning.pytorch.loggers.",
                   "lightning.pytorch.strategies.", "lightning.pytorch.plugins.", "timm.", "torch.optim.", "peft.")
# The functions a config may call (a class is built; any other function is refused): the project's factories.
TARGET_FUNCTIONS = ("spt_lightning.backbones.build_vit", "spt_lightning.schedules.warmup_cosine")
# Top-level keys a CSV of chosen hyperparameters may never set: where a run reads and writes, what it logs
# to, what it runs besides training, and whether it replaces a finished run.
CHOICE_FORBIDDEN = ("hydra", "paths", "logger", "callbacks", "resume", "overwrite")


class UntrustedInputError(SptError):
    """A file from elsewhere asks for more than data: an object to build, a key outside its remit."""


def _targets(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield where or "<root>", value
            else:
                yield from _targets(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{where}[{i}]")


def allowed_target(target: Any) -> bool:
    """Whether ``target`` names a class of :data:`TARGET_PACKAGES` or one of :data:`TARGET_FUNCTIONS`.
    Only modules of those packages are imported to find out."""
    if not isinstance(target, str) or not target.startswith(TARGET_PACKAGES) or ".." in target:
        return False
    if target in TARGET_FUNCTIONS:
        return True
    module_name, _, name = target.rpartition(".")
    try:
        return inspect.isclass(getattr(importlib.import_module(module_name), name))
    except (ImportError, AttributeError, ValueError):
        return False


def check_targets(config: DictConfig | dict, source: Path | str) -> None:
    """Refuse a config read from ``source`` that names an object outside the allowlist, in one line,
    before anything is built."""
    plain = OmegaConf.to_container(config, resolve=False) if isinstance(config, DictConfig | ListConfig) else config
    for where, target in _targets(plain):
        if not allowed_target(target):
            raise UntrustedInputError(
                f"{source}: {where}._target_={target!r} is not an object this project builds (classes of "
                f"{', '.join(p.rstrip('.') for p in TARGET_PACKAGES)}; functions {', '.join(TARGET_FUNCTIONS)}); "
                f"nothing was run. Remove that entry, or start a new run with your own command line.")


def check_plain_choice(key: str, value: str, cfg: DictConfig, source: Path | str) -> None:
    """A ``key=value`` read from a CSV of chosen hyperparameters: an existing key of ``cfg`` that holds a
    plain value (not a group, not a list), outside :data:`CHOICE_FORBIDDEN`, set to a number, a boolean,
    ``null`` or a word (no interpolation, list, mapping or sweep)."""
    fix = "nothing was run. Fix the column, or pass the value on the command line."
    if not key or key[0] in "+~" or key.split(".", 1)[0].split("/", 1)[0] in CHOICE_FORBIDDEN:
        raise UntrustedInputError(f"{source}: column {key!r} may not be set from a file ({', '.join(CHOICE_FORBIDDEN)} "
                                  f"and +/~ keys never are); {fix}")
    try:
        current = OmegaConf.select(cfg, key, throw_on_missing=False, default=KeyError)
    except Exception:  # noqa: BLE001 - a malformed key
        current = KeyError
    if current is KeyError or isinstance(current, DictConfig | ListConfig):
        raise UntrustedInputError(f"{source}: column {key!r} is not a config key holding a single value; {fix}")
    if any(c in value for c in "${}[](),'\"\\=") or "\n" in value:
        raise UntrustedInputError(f"{source}: {key}={value!r} is not a plain value (a number, true/false, null or "
                                  f"a word); {fix}")


class _NumpyOnly(pickle.Unpickler):
    """Rebuilds numpy arrays (and their dtypes and scalars) only."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array global")
        return super().find_class(module, name)


def load_numpy_pickle(data: bytes, source: Path | str) -> Any:
    """Unpickle ``data`` (read from ``source``) allowing numpy arrays only: a pickle that names any other
    global (code to run) is refused, naming the file."""
    try:
        return _NumpyOnly(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise UntrustedInputError(f"{source} is not a pickle of numpy arrays ({err}); it was not loaded. Delete it "
                                  f"and fetch it again (python -m spt_lightning.assets fetch).") from err

