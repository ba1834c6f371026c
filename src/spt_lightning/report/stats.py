"""The report's statistics on its records: each setting against SPT k-means of the same setting otherwise,
paired per task and seed (a paired t-test across seeds; McNemar's exact test per seed on its test images)."""

from __future__ import annotations

from typing import Any

from ..settings import INIT_KEYS
from .records import Entry, Setting

PROMPT_TUNING = "spt_lightning.methods.Method"  # the method record of prompt tuning (SPT, VPT): prompts only


def is_spt(setting: Setting, deep: bool | None = None) -> bool:
    """SPT by the setting's own record: prompt tuning (no other added modules) with k-means prompts; with
    ``deep``, of that depth."""
    return (setting.init == "kmeans" and setting.value("method._target_") == PROMPT_TUNING
            and (deep is None or bool(setting.value("prompt.deep")) == deep))


def beside_init(setting: Setting) -> tuple:
    """What a setting shares with its other prompt inits (SPT and its VPT twin)."""
    return setting.beside(lambda key: key in INIT_KEYS)


def _beside_method(setting: Setting) -> tuple:  # what a method's own keys (method.*, prompt.*) leave
    return setting.beside(lambda key: key in INIT_KEYS or key.startswith(("method.", "prompt.")))


def kmeans_reference(settings: dict[Setting, Entry], key: Setting) -> Entry | None:
    """SPT k-means of the same setting otherwise (the same but for the method and its prompt init); for
    another method (LoRA, adapters, E²VPT, ...), SPT-deep k-means under the same recipe, data, pretrain and
    backbone when exactly one such setting is there."""
    same = [e for k, e in settings.items() if k != key and k.init == "kmeans" and beside_init(k) == beside_init(key)]
    if same:
        return same[0]
    spt = [e for k, e in settings.items() if k != key and is_spt(k, deep=True) and _beside_method(k) == _beside_method(key)]
    return spt[0] if len(spt) == 1 and key.init != "kmeans" else None


def paired(entry: Entry, reference: Entry) -> list[tuple[str, Any, float, float]]:
    """(task, seed, ours, reference's) of every task and seed both ran."""
    out = []
    for task in sorted(set(entry.seeds) & set(reference.seeds)):
        ours, theirs = entry.by_seed(task), reference.by_seed(task)
        out += [(task, seed, ours[seed], theirs[seed]) for seed in sorted(set(ours) & set(theirs), key=str)]
    return out


def paired_vs_kmeans(settings: dict[Setting, Entry], key: Setting) -> str:
    """This setting against SPT k-means of the same setting otherwise: the mean difference in points over
    the (task, seed) pairs both ran and a paired t-test across those pairs (the seeds are the replicates;
    their test images are the same, so the images of several seeds are not independent samples)."""
    if key.init == "kmeans":
        return "ref." if any(kmeans_reference(settings, k) is settings[key] for k in settings) else ""
    reference = kmeans_reference(settings, key)
    pairs = paired(settings[key], reference) if reference else []
    if not pairs:
        return ""
    diffs = [ours - theirs for _, _, ours, theirs in pairs]
    cell = f"{sum(diffs) / len(diffs):+.2f}"
    if len(pairs) < 2 or len(set(diffs)) == 1:
        return f"{cell} (p: needs seeds that differ)"
    from scipy.stats import ttest_rel

    return f"{cell} (p {p_value(float(ttest_rel([p[2] for p in pairs], [p[3] for p in pairs]).pvalue))})"


def per_seed_mcnemar(settings: dict[Setting, Entry]) -> str:
    """Per setting, task and seed against SPT k-means: McNemar's exact test on that seed's test images."""
    lines = []
    for key, e in sorted(settings.items(), key=lambda kv: kv[0].order()):
        reference = kmeans_reference(settings, key)
        if reference is None or key.init == "kmeans":
            continue
        tests = [f"{task} seed {seed}: {p_value(mcnemar(e.correct[(task, seed)], reference.correct[(task, seed)]))}"
                 for task, seed, _, _ in paired(e, reference)
                 if (task, seed) in e.correct and (task, seed) in reference.correct]
        if tests:
            lines.append(f"- {key.method} / {key.init or 'no prompts'}: " + "; ".join(tests))
    return ("\nMcNemar's exact test against SPT k-means, one per task and seed (each on that seed's test images; "
            "pooling seeds would count the same images several times):\n" + "\n".join(lines) + "\n") if lines else ""


def mcnemar(a: str, b: str) -> float:
    """Two-sided exact McNemar p-value of two equally long right/wrong strings ("1"/"0" per test image): the
    exact binomial test of the discordant images (scipy)."""
    from scipy.stats import binomtest

    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b))
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
