"""Which grid points of a study may train together (``python -m spt_lightning.tune --pack K``), and the
``pack.json`` that tells a pack job its points. Torch-free: the study driver decides before any run.

Points pack when their runs read the same images in the same order through the same frozen backbone and
differ only in what each replica keeps apart: its optimizer groups' lr and weight decay (``PER_POINT``).
Training a pack is ``packed_train``; the model is ``models.packed``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .files import write_atomically
from .settings import settings

# What each point of a pack may set on its own: its optimizer groups (lr, weight decay, per-group scales).
PER_POINT = ("model.optimizer.lr", "model.optimizer.weight_decay", "model.param_groups.", "recipe.lr",
             "recipe.weight_decay", "recipe.head_weight_decay")
# The callbacks a pack runs as its points' runs would (selection and checkpoints are the pack's own).
CALLBACKS = {"best_checkpoint", "last_checkpoint", "learning_rates", "prototype_init"}
PACK = "pack.json"


def _per_point(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in PER_POINT)


def shared(config: dict[str, Any]) -> str:
    """A digest of a run's settings less what a point of a pack may set on its own."""
    kept = {k: v for k, v in settings(config).items() if not _per_point(k)}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def why_not(config: dict[str, Any]) -> str | None:
    """Why a run of this resolved config cannot be packed (``None``: it can)."""
    method = config["method"]
    if method["_target_"] != "spt_lightning.methods.Method":
        return (f"method={method['name']} adds tensors inside the frozen blocks; a pack shares one backbone forward "
                "and holds per-point prompts and heads only (prompt tuning packs)")
    if config["prompt"]["length"] is None:
        return f"method={method['name']} has no prompts"
    from .prototypes.strategies import find

    init = find(config["prompt"]["init"])
    if init is not None and init.reads_prompts:
        return f"prompt.init={init.name} reads each model's own prompts (through its forward)"
    if not config["prompt"].get("trainable", True):
        return "prompt.trainable=false: a pack trains every point's prompts"
    if config["prompt"]["dropout"]:
        return "prompt dropout would draw other masks in a pack than in the point's own run"
    extra = sorted(k for k, v in (config.get("callbacks") or {}).items() if v is not None and k not in CALLBACKS)
    if extra:
        return f"callbacks {', '.join(extra)} see one model, not a pack"
    devices, strategy = config["trainer"]["devices"], str(config["trainer"]["strategy"])
    if "ddp" in strategy or not (devices in (1, "1", "auto") or devices == [0]):
        return f"a pack trains on one device (trainer.devices={devices}, trainer.strategy={strategy})"
    return None


def packs(configs: list[dict[str, Any] | None], size: int) -> tuple[list[list[int]], dict[str, int]]:
    """The runs of ``configs`` grouped into packs of at most ``size`` points (indices, in order) of equal
    settings apart from ``PER_POINT``; a run that cannot be packed (``None``: it continues an unfinished
    run of its own), or has no partner, is alone. Also why runs were left alone: ``{reason: count}``."""
    if size <= 1:
        return [[i] for i in range(len(configs))], {}
    groups: dict[str, list[int]] = {}
    alone: list[list[int]] = []
    reasons: dict[str, int] = {}
    for i, config in enumerate(configs):
        reason = "it continues an unfinished run of its own" if config is None else why_not(config)
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
            alone.append([i])
        else:
            groups.setdefault(shared(config), []).append(i)
    chunks = [g[s:s + size] for g in groups.values() for s in range(0, len(g), size)]
    return sorted(alone + chunks), reasons


def pack_name(folders: list[Path]) -> str:
    """``pack-<hash of its points' folders>``: the same points make the same pack folder (its resume)."""
    return "pack-" + hashlib.sha256("\n".join(sorted(map(str, folders))).encode()).hexdigest()[:12]


def write_pack(folder: Path, members: list[dict[str, Any]]) -> None:
    """``members``: per point its ``label`` (metric suffix), ``folder`` and resolved ``config``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / PACK, lambda tmp: tmp.write_text(json.dumps({"members": members}, indent=2, default=str)))


def read_pack(folder: Path) -> list[dict[str, Any]]:
    return json.loads((Path(folder) / PACK).read_text())["members"]
