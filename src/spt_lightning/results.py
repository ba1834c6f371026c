"""The one-screen summary printed at the end of a run."""

from __future__ import annotations

from typing import Any


def format_summary(r: dict[str, Any]) -> str:
    p = r["parameters"]
    share = 100.0 * p["learnable"] / p["backbone"]
    share_no_head = 100.0 * p["learnable_without_head"] / p["backbone"]
    sel = r["selection"]
    rows = [
        ("task", f"{r['task']} (protocol {r['protocol']})"),
        ("method", f"{r['method']} (prompt length {r['prompt_length']}, {'deep' if r['prompt_deep'] else 'shallow'})"
         if r["prompt_length"] else r["method"]),
        ("backbone", f"{r['backbone']} @ {r['img_size']}px, pretrain {r['pretrain']}"),
        ("learnable", f"{p['learnable']:,} params = {share:.3f}% of backbone ({p['backbone']:,}); "
                      f"without head {p['learnable_without_head']:,} = {share_no_head:.3f}%"),
        ("selected", f"epoch {sel['epoch']} of {sel['epochs']} on val: acc1 {_pct(sel['val_acc1'])}"
         if sel["val_acc1"] is not None else f"last epoch ({sel['epoch']} of {sel['epochs']}); no validation split"),
        ("test", f"acc1 {_pct(r['test'].get('acc1'))}  acc5 {_pct(r['test'].get('acc5'))}"
         if r["test"] else "not run (protocol tune: hyperparameters are chosen on val only)"),
        ("time", "  ".join(f"{k} {v:.1f}s" for k, v in r["timings"].items())),
        ("outputs", r["output_dir"]),
    ]
    width = max(len(k) for k, _ in rows)
    line = "-" * 78
    return "\n".join([line, *(f"{k:>{width}} : {v}" for k, v in rows), line])


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"
