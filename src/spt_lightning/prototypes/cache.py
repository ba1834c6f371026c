"""On-disk cache of prototypes, keyed by everything that determines them."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import write_atomically

log = logging.getLogger(__name__)


def weights_fingerprint(module: nn.Module, skip: tuple[str, ...] = ()) -> str:
    """A hash of every tensor of ``module`` (names, shapes, bytes), except names starting with ``skip``."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        if name.startswith(skip):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def load(path: Path, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """The cached entry, or ``None`` when there is none or it is not an entry of prompts of ``shape``
    (``[layers, P, dim]``): unreadable, another kind of file, another shape (a warned miss)."""
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(entry, dict) or not isinstance(entry.get("prompts"), torch.Tensor) or "stats" not in entry:
            raise ValueError("not a prototype cache entry")
        if tuple(entry["prompts"].shape) != tuple(shape) or not entry["prompts"].is_floating_point():
            raise ValueError(f"prompts of shape {tuple(entry['prompts'].shape)} ({entry['prompts'].dtype}), "
                             f"this run's are {tuple(shape)}")
        return entry
    except Exception as err:  # truncated, garbage, written by something else
        log.warning("Prototype cache entry %s is unreadable (%s): computing the prototypes again", path, err)
        return None


def save(path: Path, entry: dict[str, Any]) -> None:
    """Store ``entry``; a cache that cannot be written costs the next run a data pass, not this run."""
    try:
        write_atomically(path, lambda tmp: torch.save(entry, tmp))
    except OSError as err:
        log.warning("Prototype cache %s cannot be written (%s); going on without caching. Set init.cache_dir "
                    "to a writable folder, or init.cache_dir=null to turn the cache off.", path.parent, err)
