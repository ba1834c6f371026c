"""Checks on the command line and the composed config that must fail before any work is done."""

from __future__ import annotations

import logging

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, check_choice

log = logging.getLogger(__name__)


def _from_recipe(cfg: DictConfig, key: str) -> str:
    """Where a bad value came from when the recipe set it: `` (from recipe=spt: ${recipe.lr...})``."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    raw = OmegaConf.to_container(node, resolve=False).get(leaf) if isinstance(node, DictConfig) else None
    if "recipe" not in cfg or "recipe." not in str(raw):
        return ""
    return f" (from recipe={cfg.recipe.name}: {raw})"


@contextmanager
def naming_the_recipe(cfg: DictConfig) -> Iterator[None]:
    """A constructor's refusal of a value the recipe set says so: the user fixes the recipe key, or
    overrides the value on the command line."""
    try:
        yield
    except ConfigError as err:
        origin = _from_recipe(cfg, err.key) if err.key else ""
        if not origin:
            raise
        raise ConfigError(f"{err}{origin}", err.key) from None


def _missing(node: dict, prefix: str = "") -> Iterator[str]:
    """Keys whose value is still ``???`` (mandatory, left unset), read without resolving anything."""
    for key, value in node.items():
        if value == "???":
            yield f"{prefix}{key}"
        elif isinstance(value, dict):
            yield from _missing(value, f"{prefix}{key}.")


# Keys renamed since earlier versions: an old key on the command line still works, with one line saying so.
RENAMED = {"optim.warmup_epochs": "model.scheduler.warmup_epochs", "optim.": "model.", "init.strategy": "prompt.init"}


def renamed(overrides: list[str]) -> list[str]:
    """``overrides`` with renamed keys (:data:`RENAMED`) under their new names, each change logged once."""
    out = []
    for override in overrides:
        old = next((o for o in RENAMED if override.startswith(o) and (o.endswith(".") or override[len(o):][:1] == "=")), None)
        if old is not None:
            new = RENAMED[old] + override[len(old):]
            log.warning("%s is deprecated: read as %s (the key is now %s)", override, new, RENAMED[old].rstrip("."))
            override = new
        out.append(override)
    return out


def compose_train(overrides: list[str], hydra: bool = False) -> DictConfig:
    """The run config (``conf/train.yaml``) as the command line would compose it (with Hydra's own node
    when ``hydra``); inside an initialised Hydra (a launcher, a test's ``initialize``) it uses that one."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)
    with initialize_config_module(version_base="1.3", config_module="spt_lightning.conf"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def check_config(cfg: DictConfig) -> None:
    """Rules on the composed config as a whole, before any work. A single setting is checked by the
    constructor that takes it (train builds them all before anything is written or downloaded)."""
    from .record import SELECT_RULES

    check_choice("select_epoch", cfg.get("select_epoch", "last"), SELECT_RULES)
    for key in _missing(OmegaConf.to_container(cfg, resolve=False)):
        if key == "task.data_dir":
            from .data.families import family_of

            layout = family_of(OmegaConf.to_container(cfg.task, resolve=False)).layout
            raise ConfigError(f"task={cfg.task.name} needs its folder: pass task.data_dir=/path/to/images, a "
                              f"folder that holds {layout}", key)
        raise ConfigError(f"{key} has no value (??? in its config); pass {key}=...", key)


# Launcher plugins and the extra of this package that installs each.
LAUNCHER_EXTRAS = {"joblib": "joblib", "submitit_slurm": "slurm", "submitit_local": "slurm"}


def check_launcher(overrides: list[str]) -> None:
    """A launcher whose plugin is not installed is one line naming the extra to install."""
    from hydra.errors import MissingConfigException

    chosen = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra/launcher=")), None)
    if chosen is None:
        return
    try:
        launcher = compose_train([f"hydra/launcher={chosen}"], hydra=True).hydra.launcher
    except MissingConfigException as err:
        extra = LAUNCHER_EXTRAS.get(chosen)
        fix = (f"pip install 'spt-lightning[{extra}]'" if extra else
               f"install the Hydra launcher plugin that provides '{chosen}'")
        raise ConfigError(f"hydra/launcher={chosen}: the launcher plugin is not installed; {fix}",
                          "hydra/launcher") from err
    for override in overrides:  # an option the plugin does not know (a typo would be dropped on a cluster)
        key = override.split("=", 1)[0]
        if key.startswith("hydra.launcher.") and key.split(".")[2] not in launcher:
            name = key.split(".")[2]
            raise ConfigError(f"{key}: the {chosen} launcher has no option '{name}'.{_did_you_mean(name, list(launcher))}"
                              f" Its options: {', '.join(k for k in launcher if not k.startswith('_'))}", key)


# ---- the command line, before Hydra composes it ------------------------------------------------
def _group_options() -> dict[str, list[str]]:
    """Config groups of the package and their options (``task`` → ``fgvc/cub``, ``vtab/dtd``, ...)."""
    root = files("spt_lightning.conf")
    options: dict[str, list[str]] = {}

    def walk(node, group: str, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir() and not child.name.startswith("_"):
                walk(child, group, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml") and not child.name.startswith("_"):  # _base.yaml: shared, not an option
                options[group].append(prefix + child.name.removesuffix(".yaml"))

    for group in root.iterdir():
        if group.is_dir() and not group.name.startswith(("_", "hydra")):
            options[group.name] = []
            walk(group, group.name, "")
    return {g: sorted(o) for g, o in options.items()}


def _keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return []
    return [k for key, value in node.items() for k in (f"{prefix}{key}", *_keys(value, f"{prefix}{key}."))]


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def check_overrides(overrides: list[str]) -> None:
    """Unknown config keys and group options, named with the nearest valid ones, before Hydra runs.

    Hydra's own errors list only a group's top-level options (``task=fgvc/nope`` offers ``folder``)
    and suggest ``+key=value`` for a typo, which would add a key nothing reads.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return  # a syntax error: Hydra's own message says where
    check_launcher(overrides)
    groups = _group_options()
    choices, keys = [], []
    for o in parsed:
        name = o.key_or_group
        if name.startswith("hydra") or o.is_delete() or o.is_add() or o.is_force_add():
            continue
        if name in groups:
            if o.is_sweep_override():
                values = list(o.sweep_string_iterator())
            elif isinstance(o.value(), list):  # callbacks=[ema,prompt_analysis]: the options merged, Hydra's way
                values = [str(v) for v in o.value()]
            else:
                values = [o.get_value_element_as_str()]
            for value in values:
                if value != "null" and value not in groups[name]:
                    raise ConfigError(f"{name}={value} is not an option of '{name}'.{_did_you_mean(value, groups[name])}"
                                      f" Options: {', '.join(groups[name])}")
            choices.append(f"{name}={values[0]}" if o.is_sweep_override() else f"{name}={o.get_value_element_as_str()}")
        else:
            keys.append(name)
    if not keys:
        return
    try:
        known = _keys(OmegaConf.to_container(compose_train(choices)))
    except Exception:
        return  # composition fails for another reason: Hydra's message names it
    for key in keys:
        if key not in known:
            raise ConfigError(f"{key} is not a config key.{_did_you_mean(key, known)} "
                              f"(`python -m spt_lightning --cfg job` prints every key; +{key}=... would add a "
                              f"new key that nothing reads.)")
