"""``results.json``: the one schema of what a run records, read and written here only (no torch import:
``report`` reads it too), and the summary a run prints. What a run collects into it: ``record``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import RunFolderError
from .files import home_relative, write_atomically

RESULTS = "results.json"


def read_results(path: Path) -> dict[str, Any]:
    """A ``results.json``; a file that is not one is an error naming it."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path} is not a readable results file ({err}); delete it or move it away") from err
    if not isinstance(results, dict) or "status" not in results:
        raise RunFolderError(f"{path} is not a results file of spt_lightning (no 'status'); delete it or move it away")
    return results


def write_results(output_dir: Path, results: dict[str, Any]) -> None:
    """Atomically (a report over a sweep that is still running never reads half a file), paths under the
    home folder as ``~/...``."""
    text = json.dumps(home_relative(results), indent=2, default=str)
    write_atomically(Path(output_dir) / RESULTS, lambda tmp: tmp.write_text(text))


def finished(path: Path) -> bool:
    """Whether ``path`` is the results file of a finished run."""
    try:
        return path.is_file() and read_results(path)["status"] == "ok"
    except RunFolderError:
        return False


def format_summary(r: dict[str, Any]) -> str:
    p = r["parameters"]
    share = 100.0 * p["learnable"] / p["backbone"]
    share_no_head = 100.0 * p["learnable_without_head"] / p["backbone"]
    sel = r["selection"]
    rows = [
        ("task", f"{r['task']} (protocol {r['protocol']})"),
        ("splits", ("standard: " if r["splits"]["standard"] else "not the papers' splits: ") + r["splits"]["how"]
         + (f"; images {r['splits']['images']}" if r["splits"].get("images") not in (None, "in memory") else "")),
        ("method", f"{r['method']} (prompt length {r['prompt_length']}, {'deep' if r['prompt_deep'] else 'shallow'})"
         if r["prompt_length"] else r["method"]),
        ("backbone", f"{r['backbone']} @ {r['img_size']}px, pretrain {r['pretrain']}"),
        ("precision", f"{r['precision']['used']} ({r['precision']['why']})"),
        ("learnable", f"{p['learnable']:,} params = {share:.3f}% of backbone ({p['backbone']:,}); "
                      f"without head {p['learnable_without_head']:,} = {share_no_head:.3f}%"),
        ("selected", (f"the last epoch ({sel['epoch']} of {sel['epochs']}): val acc1 {_pct(sel['val_acc1'])}"
                      f" (best {_pct(sel.get('best_val_acc1'))})" if sel.get("rule") == "last" else
                      f"epoch {sel['epoch']} of {sel['epochs']} on val: acc1 {_pct(sel['val_acc1'])}")
         if sel["val_acc1"] is not None else f"last epoch ({sel['epoch']} of {sel['epochs']}); no validation split"),
        ("test", f"acc1 {_pct(r['test'].get('acc1'))}  acc5 {_pct(r['test'].get('acc5'))}"
         if r["test"] else "not run (protocol tune: hyperparameters are chosen on val only)"),
        *([("init", _init_line(r["init"]))] if r.get("init") else []),
        ("time", "  ".join(f"{k} {v:.1f}s" for k, v in r["timings"].items())),
        *([("W&B", r["wandb"] + ("" if r["wandb"] == "online" else ": upload with `wandb sync <run>/wandb/offline-run-*`"))]
          if r.get("wandb") else []),
        ("outputs", r["output_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    line = "-" * 78
    return "\n".join([line, *(f"{k:>{width}} : {v}" for k, v in rows), line])


def _init_line(init: dict[str, Any]) -> str:
    """The prompt init in one line: tokens per layer, where k-means ran, time, cache."""
    tokens = sorted({layer["tokens"] for layer in init.get("layers", [])})
    parts = [f"{'/'.join(map(str, tokens))} tokens per layer" if tokens else "",
             f"k-means on {init['kmeans_device']}" if init.get("kmeans_device") else "",
             f"{init.get('time', 0.0):.1f}s", f"cache {init.get('cache', 'off')}"]
    return ", ".join(p for p in parts if p)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"
