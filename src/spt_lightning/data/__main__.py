"""Data tools: ``python -m spt_lightning.data prepare TASK --raw DIR`` and ``... check task=TASK [overrides]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .datasets import DataError


def _task_config(overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    from ..config import compose_train

    return OmegaConf.to_container(compose_train(overrides).task, resolve=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spt_lightning.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write split files from an official download")
    prep.add_argument("task", help="fgvc/{cub,nabirds,flowers,dogs,cars} or vtab/<any of the 19 VTAB-1k tasks>")
    prep.add_argument("--raw", required=True, type=Path,
                      help="the official download (FGVC) or the tensorflow-datasets data_dir (VTAB)")
    prep.add_argument("--out", type=Path, help="output folder (FGVC: default --raw; VTAB: required)")
    prep.add_argument("--seed", type=int, default=0, help="seed of the FGVC val carve-out (VTAB's splits are defined)")
    prep.add_argument("--force", action="store_true", help="overwrite split files that exist")
    chk = sub.add_parser("check", help="validate a task's data folder (Hydra overrides, e.g. task=fgvc/cub)")
    chk.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            from .prepare import prepare_fgvc, prepare_vtab

            kind, _, name = args.task.partition("/")
            if kind == "fgvc":
                counts = prepare_fgvc(name, args.raw, args.out, seed=args.seed, force=args.force)
            elif kind == "vtab" and args.out is not None:
                counts = prepare_vtab(name, args.raw, args.out, force=args.force)
            else:
                raise DataError("prepare takes fgvc/<name> or vtab/<name> (with --out for VTAB)")
            print(f"{args.task}: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
            return 0
        from .check import check_task

        report = check_task(_task_config(args.overrides))
        print(f"{report['task']} at {report['root']}: " + ", ".join(f"{s} {n}" for s, n in report["counts"].items())
              + f"; images: {report['images']}")
        for note in report["notes"]:
            print(f"  note: {note}")
        for problem in report["problems"]:
            print(f"  {problem}")
        print("ok" if not report["problems"] else f"{len(report['problems'])} problem(s)")
        return 0 if not report["problems"] else 1
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
