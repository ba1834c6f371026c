"""Published numbers beside a setting's own (``published.py`` holds them): which ones a setting may stand
beside (same method and init, pretrain and weights, backbone; the papers' protocol and splits; the form its
authors published), and the table of both."""

from __future__ import annotations

from importlib.resources import files

from omegaconf import OmegaConf

from .published import AUTHORS_FORM, SELECTIONS, SOURCES, Number, computed_mean, convention, published, standing, \
    weights_of
from .records import GROUP_TITLES, Entry, Setting, catalogue


def _own_init(method: str) -> str | None:
    """The prompt init a method's own record sets (conf/method/<method>.yaml), None for an unknown method."""
    path = files("spt_lightning.conf") / "method" / f"{method}.yaml"
    if not path.is_file():
        return None
    with path.open() as f:
        return OmegaConf.load(f).get("prompt", {}).get("init")


def published_for(key: Setting, entry: Entry) -> dict[str, Number]:
    """The published numbers of this setting's method (with its prompt init where that is not the method's
    own, e.g. VIPAMIN), pretrain and backbone, measured on the same weights (``published.WEIGHTS``), when it
    ran the papers' protocol (``data.protocol=final``) on the papers' splits (every run's
    ``splits.standard``); a group's mean of published per-task values (of one selection rule) where the
    paper's own is not shipped. ``{task or group title: Number}``."""
    if key.value("data.protocol") != "final" or not entry.standard:
        return {}
    own, init = _own_init(key.method), key.value("prompt.init")
    form = {**AUTHORS_FORM.get(key.method, {}), **AUTHORS_FORM.get(init, {})}
    if any(key.value(k) not in (v, None) for k, v in form.items()):
        return {}  # another form than the one its authors published (e.g. VIPAMIN's orthogonal part rescaled)
    numbers = {name: n for name, n in published(key.method, key.pretrain, key.backbone,
                                                init="" if None in (own, init) or init == own else init
                                                ).items()  # own None: no prompts
               if n.weights == weights_of(key.pretrain, key.backbone)}
    for group, title in GROUP_TITLES.items():
        if title not in numbers and (mean := computed_mean(numbers, catalogue().get(group, []))) is not None:
            numbers[title] = mean
    return numbers


def beside_published(settings: dict[Setting, Entry]) -> str:
    """Each of our figures whose setting has a published one: ours, published, the difference, how both are
    averaged, the source."""
    lines, used = [], []
    for key, e in sorted(settings.items(), key=lambda kv: kv[0].order()):
        numbers = published_for(key, e)
        ours = {**e.per_task, **{g: v for g, v in e.groups.items() if v is not None}}
        jpeg = "*" if e.images in ("jpeg", "mixed") else ""
        for name, value in ours.items():
            if name in numbers:
                number = numbers[name]
                used += [number.source] if number.source not in used else []
                lines.append(f"| {' | '.join(map(str, key.columns))} | {name} | {value:.2f}{jpeg} | {number.top1:.2f} | "
                             f"{value - number.top1:+.2f} | {convention(name)} | {SELECTIONS[number.selection]} | "
                             f"{number.weights} | [{used.index(number.source) + 1}] |")
    if not lines:
        return ""
    head = ("| method | pretrain | backbone | P | task / group | ours | published | ours − published | averaged as "
            "| published number chosen by | weights | source |")
    notes = "".join(f"[{i + 1}] {SOURCES[s]}\n" for i, s in enumerate(used))
    if any("*" in line.split(" | ")[5] for line in lines):
        notes += ("\n\\* our runs read JPEG images (a NOAH-style VTAB-1k folder, `splits.images` in results.json): "
                  "JPEG re-encoding moves some tasks by points (CIFAR-100 by 10-15 between pipelines, "
                  "adapter_plus issue 3); the published numbers of VPT's and SPT's code read TFDS's decoded images.\n")
    return ("\nBeside the published numbers (same method, prompt init, pretrain and weights, backbone; "
            "`data.protocol=final` on the papers' splits; ours averaged as the published number is: a task over seeds, "
            "a group over its tasks, the VTAB overall figure in the convention its name says; ours are chosen on val "
            "and tested at the last epoch, so a published number chosen on test is not like for like):\n\n"
            + head + "\n|" + " --- |" * 12 + "\n" + "\n".join(lines) + "\n\n" + notes)


def published_table() -> str:
    """Every shipped published number, method × pretrain on the report's columns (docs/published.md)."""
    columns = {GROUP_TITLES[g]: tasks for g, tasks in catalogue().items()}
    columns["VTAB mean of 19 tasks"] = [t for g, tasks in catalogue().items() if g.startswith("vtab_") for t in tasks]
    return standing(columns)
