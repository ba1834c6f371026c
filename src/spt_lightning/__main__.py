"""``python -m spt_lightning [overrides]``: a thin Hydra entry point around :func:`train`."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from .config import check_overrides, renamed
from .errors import SptError


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def run(cfg: DictConfig) -> float | None:
    from .jobs import run_job

    return run_job(cfg)


def usage() -> str:
    """``--help``: the options of every config group (files starting with ``_`` are shared bases, not
    options), the examples, and where to see the composed config."""
    from importlib.resources import files

    root = files("spt_lightning.conf")
    groups = []

    def walk(folder, prefix: str) -> None:
        for child in sorted(folder.iterdir(), key=lambda c: c.name):
            if child.is_dir() and not child.name.startswith("_") and child.name != "hydra":
                options = sorted(c.name[:-5] for c in child.iterdir() if c.name.endswith(".yaml") and c.name[0] != "_")
                if options:
                    groups.append(f"  {prefix}{child.name}: {', '.join(options)}")
                walk(child, f"{prefix}{child.name}/")

    walk(root, "")
    help_cfg = hydra_help()
    return "\n".join([help_cfg["header"].rstrip(), "", "Config groups (group=option):", *groups, "",
                      help_cfg["footer"].rstrip(), ""])


def hydra_help() -> dict[str, str]:
    from importlib.resources import files

    from omegaconf import OmegaConf

    with (files("spt_lightning.conf") / "hydra" / "default.yaml").open() as f:
        return OmegaConf.to_container(OmegaConf.load(f).help)


def command_line_overrides(argv: list[str]) -> list[str]:
    """The overrides of a Hydra command line: its words less Hydra's flags and their values (as
    ``hydra.main`` reads them; built here because Hydra's own parser is not public API)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("overrides", nargs="*")
    for flag in ("--hydra-help", "--version", "--resolve", "--run", "-r", "--multirun", "-m",
                 "--shell-completion", "-sc"):
        parser.add_argument(flag, action="store_true")
    for names in (("--cfg", "-c"), ("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn"),
                  ("--config-dir", "-cd"), ("--experimental-rerun",)):
        parser.add_argument(*names)
    parser.add_argument("--info", "-i", nargs="?", const="all")
    return parser.parse_known_args(argv)[0].overrides


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(usage())
        return
    sys.argv[1:] = renamed(sys.argv[1:])
    try:
        check_overrides(command_line_overrides(sys.argv[1:]))
    except SptError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    run()


if __name__ == "__main__":
    main()
