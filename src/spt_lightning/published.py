"""Published top-1 accuracies (%) of VPT and SPT, shipped as ``published.csv``, for ``report``'s
"published" column. Only numbers whose source could be read are here; each row names its source.
Per-task rows exist for VPT on ViT-B/16 sup. IN-21k; SPT's per-task tables were not available, so its
rows are the group means that were. ``report`` computes a group's mean from per-task rows (source
"computed") where the paper's own mean is not shipped.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib.resources import files

SOURCES = {
    "vpt_tasks": "VPT (Jia et al., ECCV 2022, arXiv 2203.12119), per-task FGVC and VTAB-1k tables; transcription "
                 "checked against two public copies that agree (V-PETL Bench README, Convpass README)",
    "natural_means": "VTAB-1k Natural means from the VPT and SPT papers, as listed on sotaverified.org "
                     "(task visual-prompt-tuning, dataset vtab-1knatural7)",
    "vipamin_table": "SPT-shallow's published VTAB-1k group means as quoted in VIPAMIN (Park & Chung, NeurIPS 2025, "
                     "arXiv 2510.16446)",
    "fgvc_mean": "SPT (Wang et al., ICML 2024) FGVC mean, as listed on paperswithcode.com "
                 "(paper revisiting-the-power-of-prompt-for-visual)",
    "computed": "mean of the published per-task values of the group (the paper's own mean may differ by "
                "0.01-0.04: it averages unrounded numbers)",
}


@cache
def _table() -> dict[tuple[str, str, str], dict[str, tuple[float, str]]]:
    out: dict[tuple[str, str, str], dict[str, tuple[float, str]]] = {}
    with (files("spt_lightning") / "published.csv").open() as f:
        for row in csv.DictReader(f):
            out.setdefault((row["method"], row["pretrain"], row["backbone"]), {})[row["benchmark"]] = (
                float(row["top1"]), row["source"])
    return out


def published(method: str, pretrain: str, backbone: str) -> dict[str, tuple[float, str]]:
    """``{task or group title: (top-1 %, source key)}`` of one setting; empty when none is shipped."""
    return dict(_table().get((method, pretrain, backbone), {}))
