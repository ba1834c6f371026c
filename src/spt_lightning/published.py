"""Published top-1 accuracies (%), shipped as ``published.csv``, for ``report``'s "published" column and
the "where SPT stands" table (docs/published.md). Only numbers whose source could be read are here; each
row names its source (``SOURCES``: where, which table, and whether it is the paper's own or a quotation)
and its convention (a task's value, a group's mean, or an overall mean: VTAB-1k papers average either the
19 tasks or the 3 group means, and the benchmark name says which).

A row's ``method`` is a method config (conf/method) with ``init`` the prompt init when it is not the
method's own (VIPAMIN: ``spt_shallow`` + ``vipamin``), or, for ``ANCHORS``, a newer method this project does
not implement: shown for comparison, never matched to a run. ``report`` computes a group's mean from
per-task rows (source "computed") where the paper's own mean is not shipped.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib.resources import files

SOURCES = {
    "vpt_tasks": "VPT (Jia et al., ECCV 2022, arXiv 2203.12119), per-task FGVC and VTAB-1k tables; transcription "
                 "checked against two public copies that agree (V-PETL Bench README, Convpass README)",
    "natural_means": "VTAB-1k Natural means from the VPT and SPT papers, as listed on sotaverified.org "
                     "(task visual-prompt-tuning, dataset vtab-1knatural7): a secondary quotation",
    "vipamin_table": "SPT-shallow's published VTAB-1k group means as quoted in VIPAMIN (Park & Chung, NeurIPS 2025, "
                     "arXiv 2510.16446): a secondary quotation",
    "fgvc_mean": "SPT (Wang et al., ICML 2024) FGVC mean, as listed on paperswithcode.com "
                 "(paper revisiting-the-power-of-prompt-for-visual): a secondary quotation",
    "vipamin_readme": "VIPAMIN's own README (github.com/iamjaekyun/vipamin, section Results: VTAB-1k, MoCo-v3 and MAE "
                      "ViT-B/16): the authors' numbers; its 'Mean' is the mean of the 19 tasks (checked: the 7/4/8-"
                      "weighted mean of its group means). The variant is not named there; its tuning script "
                      "(run_indiv.sh, configs my_mae) runs the shallow one, P = 100",
    "spt_readme": "SPT's own README (github.com/WangYZ1608/Self-Prompt-Tuning, section 4): 80.26, 80.39, 79.74 on "
                  "CUB-200, MAE ViT-B/16, three seeds; the variant is not named in that sentence (the section's "
                  "example command is SPT-deep)",
    "protocol_notes": "the VPT / SPT papers' group means as transcribed in this project's protocol notes "
                      "(shared/PROTOCOL.md, 'Published reference numbers'): a secondary quotation",
    "issue_quote": "quoted in this project's issue 23 from the paper (VAPT, ICLR 2026; DA-VPT+, CVPR 2025; BPT, "
                   "ICCV 2025); not read from the paper here: a secondary quotation, check it before citing",
    "computed": "mean of the published per-task values of the group (the paper's own mean may differ by "
                "0.01-0.04: it averages unrounded numbers)",
}
# A prompt init's published numbers go only beside runs of the form its authors ran (their switches).
AUTHORS_FORM = {"vipamin": {"init.vipamin_values": "code", "init.vipamin_orth_scale": "code"}}
ANCHORS = {  # newer methods beside SPT (not implemented here): name -> citation
    "vapt": "VAPT (Le et al., ICLR 2026, arXiv 2501.18936)",
    "da_vpt_plus": "DA-VPT+ (CVPR 2025, arXiv 2505.23694)",
    "bpt_deep": "BPT-deep (Wang, Duan & Kong, ICCV 2025, arXiv 2506.22908)",
}


@cache
def rows() -> tuple[dict[str, str], ...]:
    with (files("spt_lightning") / "published.csv").open() as f:
        return tuple(csv.DictReader(f))


def published(method: str, pretrain: str, backbone: str, init: str = "") -> dict[str, tuple[float, str]]:
    """``{task or group title: (top-1 %, source key)}`` of one setting (``init``: the prompt init when it is
    not the method's own); empty when none is shipped."""
    return {r["benchmark"]: (float(r["top1"]), r["source"]) for r in rows()
            if (r["method"], r["init"], r["pretrain"], r["backbone"]) == (method, init, pretrain, backbone)}


def convention(benchmark: str) -> str:
    """How a figure of ``benchmark`` is averaged, ours and the published one alike: a task's value (over
    seeds), a group's mean over its tasks, or VTAB-1k's overall figure in one of its two conventions."""
    if "/" in benchmark:
        return "task"
    return {"FGVC": "mean of 5 tasks", "VTAB mean of 19 tasks": "mean of 19 tasks",
            "VTAB mean of 3 groups": "mean of 3 group means"}.get(benchmark, "group mean")


COLUMNS = ("FGVC", "VTAB Natural", "VTAB Specialized", "VTAB Structured", "VTAB mean of 19 tasks",
           "VTAB mean of 3 groups")
PRETRAINS = {"sup_in21k": "sup. IN-21k", "mae": "MAE", "mocov3": "MoCo v3"}


def _label(method: str, init: str) -> str:
    return ANCHORS[method].split(" (")[0] if method in ANCHORS else method + (f" + {init}" if init else "")


def standing(groups: dict[str, list[str]]) -> str:
    """Markdown: every shipped method × pretrain on the same columns (FGVC mean, VTAB-1k group means, both
    overall conventions), each number marked with its source; a mean computed from a paper's per-task
    numbers (or its group means) is marked *c*. ``groups``: each column's tasks, by its title."""
    settings = dict.fromkeys((r["method"], r["init"], r["pretrain"]) for r in rows())
    used: list[str] = []
    lines = [f"| method | pretrain | {' | '.join(COLUMNS)} |", "|" + " --- |" * (len(COLUMNS) + 2)]
    for pretrain in PRETRAINS:
        for method, init, p in settings:
            if p != pretrain:
                continue
            numbers = published(method, pretrain, "vit_base_patch16_224", init)
            values: dict[str, float] = {}
            cells = []
            for column in COLUMNS:
                tasks = groups.get(column, [])
                if column in numbers:
                    values[column], source = numbers[column]
                    used += [source] if source not in used else []
                    cells.append(f"{values[column]:.2f} [{used.index(source) + 1}]")
                    continue
                if tasks and all(t in numbers for t in tasks):
                    values[column] = sum(numbers[t][0] for t in tasks) / len(tasks)
                elif column.startswith("VTAB mean") and all(g in values for g in COLUMNS[1:4]):
                    weights = [len(groups[g]) if "19" in column else 1 for g in COLUMNS[1:4]]  # tasks per group
                    values[column] = sum(w * values[g] for w, g in zip(weights, COLUMNS[1:4])) / sum(weights)
                cells.append(f"{values[column]:.2f} *c*" if column in values else "–")
            if any(c != "–" for c in cells):
                lines.append(f"| {_label(method, init)} | {PRETRAINS[pretrain]} | {' | '.join(cells)} |")
    notes = [f"[{i + 1}] {SOURCES[s]}" for i, s in enumerate(used)]
    return "\n".join(lines + ["", "- *c*: computed here from the paper's per-task values (or its three group "
                                   "means); the paper's own may differ by 0.01-0.04 (it averages unrounded numbers)",
                               *[f"- {n}" for n in notes]])
