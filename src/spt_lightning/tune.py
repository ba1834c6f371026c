"""The tuning protocol as one command: grid on ``protocol=tune`` (val), retrain the best on ``final``, test.

    python -m spt_lightning.tune task=vtab/dtd method=spt_deep \\
        optim.optimizer.lr=1e-3,5e-3,2e-2 optim.optimizer.weight_decay=0,1e-4

Overrides with commas are grid axes; the others hold for every run. Each grid run trains on train800
(FGVC: train) and is scored on val200 (val) only; the configuration with the best validation accuracy
is retrained on train800val200 (train + val) and tested once. ``tune_final.json`` in the output folder
records the grid, the choice and the final test accuracy.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict

from .config import check_overrides
from .errors import SptError
from .files import write_atomically


def grid(overrides: list[str]) -> tuple[list[str], list[list[str]]]:
    """Split overrides into fixed ones and the grid points (one list of ``key=value`` per point).

    Sweeps are Hydra's: ``a,b``, ``range(1,4)``, ``choice(...)``, ``glob(...)``.
    """
    fixed, axes = [], []
    for item, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if parsed.is_sweep_override():
            key = parsed.get_key_element()
            axes.append([f"{key}={value}" for value in parsed.sweep_string_iterator()])
        else:
            fixed.append(item)
    return fixed, [list(p) for p in itertools.product(*axes)] if axes else [[]]


def _run(overrides: list[str], output_dir: Path) -> dict[str, Any]:
    from .results import record_outcome
    from .train import train

    with initialize_config_module(version_base="1.3", config_module="spt_lightning.conf"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    try:
        return train(cfg)
    except BaseException as err:  # a failed grid point is recorded, the grid goes on; an interruption stops it
        record_outcome(cfg, err)
        if not isinstance(err, Exception):
            raise
        return {"status": "failed", "error": f"{type(err).__name__}: {err}"}


def tune_final(overrides: list[str], root: Path | None = None) -> dict[str, Any]:
    fixed, points = grid(overrides)
    for point in points:  # a mistyped key or option is refused before any run
        check_overrides([*fixed, *point])
    if root is None:
        with initialize_config_module(version_base="1.3", config_module="spt_lightning.conf"):
            log_dir = compose("train", overrides=fixed).paths.log_dir
        root = Path(log_dir) / "tune_final" / time.strftime("%Y-%m-%d_%H-%M-%S")
    scored = []
    for i, point in enumerate(points):
        result = _run([*fixed, *point, "data.protocol=tune"], root / "grid" / str(i))
        val = result.get("selection", {}).get("val_acc1") if result.get("status") == "ok" else None
        scored.append({"overrides": point, "val_acc1": val, "status": result.get("status")})
        print(f"[{i + 1}/{len(points)}] {' '.join(point) or '(defaults)'}: val acc1 "
              f"{'failed' if val is None else f'{100 * val:.2f}%'}", flush=True)
    ok = [s for s in scored if s["val_acc1"] is not None]
    if not ok:
        raise RuntimeError(f"every grid run failed; see {root / 'grid'}")
    best = max(ok, key=lambda s: s["val_acc1"])
    final = _run([*fixed, *best["overrides"], "data.protocol=final"], root / "final")
    summary = {"fixed": fixed, "grid": scored, "chosen": best["overrides"], "chosen_val_acc1": best["val_acc1"],
               "final_test": final.get("test"), "final_dir": str(root / "final")}
    write_atomically(root / "tune_final.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=2)))
    print(f"chosen on val: {' '.join(best['overrides']) or '(defaults)'}; final test acc1 "
          f"{100 * final['test']['acc1']:.2f}%  ({root / 'tune_final.json'})" if final.get("test") else
          f"final run failed: {final.get('error')}")
    return summary


if __name__ == "__main__":
    try:
        tune_final(sys.argv[1:])
    except SptError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
