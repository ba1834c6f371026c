"""Published top-1 accuracies (%), shipped as ``published.csv``, for ``report``'s "published" column and
the "where SPT stands" table (docs/published.md). Only numbers whose source could be read are here; each
row names its source (``SOURCES``: where, which table, and whether it is the paper's own or a quotation)
and its convention (a task's value, a group's mean, or an overall mean: VTAB-1k papers average either the
19 tasks or the 3 group means, and the benchmark name says which).

A row's ``method`` is a method config (conf/method) with ``init`` the prompt init when it is not the
method's own (VIPAMIN: ``spt_shallow`` + ``vipamin``), or, for ``ANCHORS``, a method this project does
not implement: shown for comparison, never matched to a run. Each row also says how its number was chosen
(``selection``: ``SELECTIONS``) and on which weights (``weights``: ``WEIGHTS`` of its pretrain). ``report``
computes a group's mean from per-task rows (source "computed") where the paper's own mean is not shipped,
and only from rows of one selection rule.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib.resources import files
from typing import NamedTuple

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
    "spt_page_table2": "SPT's own Table 2 (Wang et al., ICML 2024), as its authors publish it on their project page "
                       "(github.com/WangYZ1608/Self-Prompt-Tuning, gh-pages branch, static/images/table2.png): FGVC "
                       "per task and VTAB-1k group means on MAE and MoCo v3; the SPT rows are the authors' own runs, "
                       "the Full, VPT and GateVPT rows their quotations of earlier papers",
    "spt_page_table3": "SPT's own Table 3 (project page, static/images/table3.png): FGVC per task on sup. IN-21k; the "
                       "SPT rows are the authors' own runs (timm's AugReg IN-21k weights, SPT train.py L224), the "
                       "others quoted from their papers (Full and Linear are VPT's)",
    "spt_page_table1": "SPT's own Table 1 (project page, static/images/table1.png): prompt inits on CUB-200 and "
                       "Caltech-101, sup. IN-21k and MAE, (a) prompts frozen after the init, (b) learnable",
    "spt_page_ablation": "SPT's own Figure 3d (project page, static/images/ablation.png): model size on CUB-200 "
                         "(MAE ViT-B/L/H), the values printed on the plot",
    "spt_page_ablation_read": "SPT's own Figure 3c (project page, static/images/ablation.png): prompt length on "
                              "CUB-200 (MAE), read from the plot (no value printed except 20): approximate, +/- 0.5",
}
# The figure rows (``figure``: table1a, table1b, figure3c, figure3d) belong to those figures' own settings
# (``setting``, e.g. prompt.trainable=false, prompt.length=40): report draws them beside the experiment of that
# figure only and never pairs them with the main tables' runs.
# How a published number was chosen. SPT's scripts keep the best *test* epoch (train_MAE.py L386 validates on
# the test split, L403-404 keep the best); VPT, VIPAMIN and this project tune on val and report the last epoch.
SELECTIONS = {"val_last": "last epoch after tuning on val", "test_best": "best test epoch",
              "unknown": "not stated by the source"}
# The weights behind each pretrain name: a published number stands beside runs of its own weights only.
WEIGHTS = {"sup_in21k": "orig_in21k", "sup_in21k_augreg": "augreg_in21k", "mae": "mae_pretrain_vit_base",
           "mocov3": "mocov3_vit_b_300ep"}
MAE_SIZES = {"vit_large_patch16_224": "mae_pretrain_vit_large", "vit_huge_patch14_224": "mae_pretrain_vit_huge"}


def weights_of(pretrain: str, backbone: str = "vit_base_patch16_224") -> str | None:
    """The weights a pretrain name loads for ``backbone`` (MAE's release has one file per size)."""
    if pretrain == "mae" and backbone in MAE_SIZES:
        return MAE_SIZES[backbone]
    return WEIGHTS.get(pretrain)
NOT_STATED = "not_stated"  # a quoted row whose source does not say which weights: never beside a run


class Number(NamedTuple):
    """One published figure: top-1 (%), its source key, how it was chosen (``SELECTIONS``), its weights."""

    top1: float
    source: str
    selection: str
    weights: str

# A method's or prompt init's published numbers go only beside runs of the form its authors ran: VIPAMIN's
# switches; LoRA on W_q and W_v (LoRA's and NOAH's form, whose rows the LoRA numbers are); the "Adapter
# 0.16 M" rows of VPT-era tables are bottleneck 8.
AUTHORS_FORM = {"vipamin": {"init.vipamin_values": "code", "init.vipamin_orth_scale": "code"},
                "lora": {"method.targets": ["q", "v"]}, "adapter": {"method.bottleneck": 8}}
ANCHORS = {  # methods beside SPT that this project does not implement: name -> citation
    "vapt": "VAPT (Le et al., ICLR 2026, arXiv 2501.18936)",
    "da_vpt_plus": "DA-VPT+ (CVPR 2025, arXiv 2505.23694)",
    "bpt_deep": "BPT-deep (Wang, Duan & Kong, ICCV 2025, arXiv 2506.22908)",
    "ssf": "SSF (Lian et al., NeurIPS 2022, arXiv 2210.08823)",
}


@cache
def rows() -> tuple[dict[str, str], ...]:
    with (files("spt_lightning") / "published.csv").open() as f:
        return tuple(csv.DictReader(f))


def published(method: str, pretrain: str, backbone: str, init: str = "") -> dict[str, Number]:
    """``{task or group title: Number}`` of one setting (``init``: the prompt init when it is not the method's
    own); empty when none is shipped."""
    return {r["benchmark"]: Number(float(r["top1"]), r["source"], r["selection"], r["weights"]) for r in rows()
            if (r["method"], r["init"], r["pretrain"], r["backbone"]) == (method, init, pretrain, backbone)
            and not r["figure"]}


def figure_rows(figure: str) -> list[dict[str, str]]:
    """The published rows of one of the paper's tables or figures (``table1a``, ``figure3d``, ...)."""
    return [r for r in rows() if r["figure"] == figure]


def computed_mean(numbers: dict[str, Number], tasks: list[str]) -> Number | None:
    """The mean of ``tasks``' published numbers (source ``computed``) when every task has one and all were
    chosen by the same rule; numbers of different selection are never averaged."""
    parts = [numbers.get(t) for t in tasks]
    if not tasks or None in parts or len({(p.selection, p.weights) for p in parts}) != 1:
        return None
    return Number(round(sum(p.top1 for p in parts) / len(parts), 2), "computed", parts[0].selection, parts[0].weights)


def convention(benchmark: str) -> str:
    """How a figure of ``benchmark`` is averaged, ours and the published one alike: a task's value (over
    seeds), a group's mean over its tasks, or VTAB-1k's overall figure in one of its two conventions."""
    if "/" in benchmark:
        return "task"
    return {"FGVC": "mean of 5 tasks", "VTAB mean of 19 tasks": "mean of 19 tasks",
            "VTAB mean of 3 groups": "mean of 3 group means"}.get(benchmark, "group mean")


COLUMNS = ("FGVC", "VTAB Natural", "VTAB Specialized", "VTAB Structured", "VTAB mean of 19 tasks",
           "VTAB mean of 3 groups")
PRETRAINS = {"sup_in21k": "sup. IN-21k", "sup_in21k_augreg": "sup. IN-21k (AugReg)", "mae": "MAE",
             "mocov3": "MoCo v3"}
MARKS = {"val_last": "", "test_best": " †", "unknown": " ?"}


def _label(method: str, init: str) -> str:
    return ANCHORS[method].split(" (")[0] if method in ANCHORS else method + (f" + {init}" if init else "")


def _overall(values: dict[str, Number], groups: dict[str, list[str]], column: str) -> Number | None:
    """VTAB-1k's overall figure from the three group means, in ``column``'s convention, when they share a rule."""
    parts = [values.get(g) for g in COLUMNS[1:4]]
    if None in parts or len({p.selection for p in parts}) != 1:
        return None
    weights = [len(groups[g]) if "19" in column else 1 for g in COLUMNS[1:4]]  # tasks per group
    top1 = sum(w * p.top1 for w, p in zip(weights, parts)) / sum(weights)
    return Number(top1, "computed", parts[0].selection, parts[0].weights)


def standing(groups: dict[str, list[str]]) -> str:
    """Markdown: every shipped method × pretrain on the same columns (FGVC mean, VTAB-1k group means, both
    overall conventions), each number marked with its source and how it was chosen (``MARKS``); a mean
    computed from a paper's per-task numbers (or its group means) is marked *c*, and numbers chosen by
    different rules are never averaged. ``groups``: each column's tasks, by its title."""
    settings = dict.fromkeys((r["method"], r["init"], r["pretrain"]) for r in rows() if not r["figure"])
    used: list[str] = []
    lines = [f"| method | pretrain | weights | {' | '.join(COLUMNS)} |", "|" + " --- |" * (len(COLUMNS) + 3)]
    for pretrain in PRETRAINS:
        for method, init, p in settings:
            if p != pretrain:
                continue
            numbers = published(method, pretrain, "vit_base_patch16_224", init)
            values: dict[str, Number] = {}
            cells = []
            for column in COLUMNS:
                if column in numbers:
                    values[column] = number = numbers[column]
                    used += [number.source] if number.source not in used else []
                    cells.append(f"{number.top1:.2f} [{used.index(number.source) + 1}]{MARKS[number.selection]}")
                    continue
                found = (_overall(values, groups, column) if column.startswith("VTAB mean")
                         else computed_mean(numbers, groups.get(column, [])))
                if found is not None:
                    values[column] = found
                cells.append(f"{found.top1:.2f} *c*{MARKS[found.selection]}" if found else "–")
            if any(c != "–" for c in cells):
                weights = ", ".join(sorted({n.weights for n in numbers.values()}))
                lines.append(f"| {_label(method, init)} | {PRETRAINS[pretrain]} | {weights} | {' | '.join(cells)} |")
    notes = [f"[{i + 1}] {SOURCES[s]}" for i, s in enumerate(used)]
    return "\n".join(lines + ["", "- *c*: computed here from the paper's per-task values (or its three group "
                                   "means); the paper's own may differ by 0.01-0.04 (it averages unrounded numbers)",
                               "- how each number was chosen: unmarked, the last epoch after tuning on val; †, the "
                               "best test epoch (SPT's scripts); ?, not stated by the source. Numbers of different "
                               "rules are never averaged together",
                               *[f"- {n}" for n in notes]])
