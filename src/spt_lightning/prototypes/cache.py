"""On-disk cache of prototypes, keyed by everything that determines them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..files import write_atomically


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


def load(path: Path) -> dict[str, Any] | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def save(path: Path, entry: dict[str, Any]) -> None:
    write_atomically(path, lambda tmp: torch.save(entry, tmp))
