"""``python -m spt_lightning.report DIR... [--out DIR]``: run folders → paper-style tables and plots.

Reads ``results.json`` files only (no training imports): builds the records once (``records.py``), then
the tables (``tables.py``), the figures (``figures.py``, drawn by ``plots.py``), the paper's tables and
figures and its claims (``paper.py``), each from those records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import SptError
from ..files import file_name
from .pairing import published_for, published_table
from .records import aggregate, load_runs, setting_of
from .tables import markdown, varying, write_csv


def analysis_figures(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    """Runs with ``prompt_analysis.csv`` (``callbacks=prompt_analysis``): a layer x epoch heatmap each."""
    import pandas as pd

    from .plots import analysis_heatmap

    written = []
    for i, run in enumerate(runs):
        path = Path(run["path"]) / "prompt_analysis.csv"
        if path.exists():
            title = (f"{run['task']} {run['method']} {run.get('prompt_init') or ''} P{run['prompt_length']} "
                     f"seed {run.get('seed')}: prompt-token dependence")
            # (numbered: two settings of one method and init, e.g. VIPAMIN's forms, must not share a file)
            name = file_name(f"{i:03d}_{run['method']}_{run.get('prompt_init')}_seed{run.get('seed')}_dependence") + ".png"
            written.append(analysis_heatmap(pd.read_csv(path), title, out / "analysis" / name)[0])
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spt_lightning.report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="run or sweep folders (searched for results.json)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="folder for report.md, report.csv, *.png")
    parser.add_argument("--published", action="store_true",
                        help="print where SPT stands: every shipped published number on the same columns, and exit")
    args = parser.parse_args(argv)
    if args.published:
        print(published_table())
        return 0
    if not args.dirs:
        parser.error("give run or sweep folders (or --published)")
    try:
        runs = load_runs(args.dirs)
    except SptError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not runs:
        print(f"no results.json under {', '.join(map(str, args.dirs))}")
        return 1
    unfinished = [r for r in runs if r.get("status") in ("failed", "interrupted")]
    settings = aggregate(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    from .figures import draw_all
    from .paper import claims, draw

    paper_text, paper_files = draw(runs, args.out)  # the paper's tables and figures whose experiments ran
    text = markdown(settings, unfinished) + (f"\n## The paper's tables and figures\n{paper_text}\n" if paper_text
                                              else "") + claims(runs)
    (args.out / "report.md").write_text(text)
    write_csv(settings, args.out / "report.csv")
    ok = [r for r in runs if r.get("status") == "ok"]
    pngs = draw_all(ok, settings, args.dirs, args.out, setting_of, varying(settings), published_for)
    pngs += analysis_figures(ok, args.out) + paper_files
    print(text)
    print(f"written: {args.out / 'report.md'}, {args.out / 'report.csv'}" + "".join(f", {p}" for p in pngs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
