"""SPT's paper's baselines on the demo beside SPT and VPT: BitFit, LoRA (peft), adapters, GatedPT and
E²VPT (with VPT's init and with SPT's), linear probing and full fine-tuning; and today's (``--today``): SSF,
AdaptFormer, FacT-TT/TK, Adapter+, Houlsby adapters, RepAdapter. Each under the demo recipe, seeds 0-2,
paired with SPT-deep per seed on the same test images (``compare.py``).

    python benchmarks/methods_demo.py run --out logs/methods_demo [--today]   # about 5 minutes a run on 2 cores
    python benchmarks/methods_demo.py table --out logs/methods_demo [--today]
    python benchmarks/methods_demo.py curves --out logs/methods_demo [--today]  # how each trained
"""

from __future__ import annotations

import argparse
from pathlib import Path

import compare

METHODS = {  # folder -> overrides; the reference first
    "spt_deep": ["method=spt_deep"],
    "vpt_deep": ["method=vpt_deep"],
    "gated_prompts": ["method=gated_prompts"],
    "e2vpt": ["method=e2vpt"],
    "e2vpt_spt": ["method=e2vpt", "prompt.init=kmeans"],
    "lora": ["method=lora"],
    "adapter": ["method=adapter"],
    "bitfit": ["method=bitfit"],
    "linear": ["method=linear"],
    "gated_prompts_spt": ["method=gated_prompts", "prompt.init=kmeans"],
    "full": ["method=full"],
}
TODAY = {  # the baselines of today's prompt papers (docs/methods.md), each at its YAML's defaults
    "spt_deep": ["method=spt_deep"],
    **{name: [f"method={name}"] for name in ("ssf", "adaptformer", "fact_tt", "fact_tk", "adapter_plus",
                                             "adapter_houlsby", "repadapter")},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "table", "curves"))
    parser.add_argument("--out", type=Path, default=Path("logs/methods_demo"))
    parser.add_argument("--reference", default="spt_deep", help="the setting each is paired with")
    parser.add_argument("--today", action="store_true", help="today's baselines instead of SPT's paper's")
    args, extra = parser.parse_known_args()
    settings = TODAY if args.today else METHODS
    if args.command == "run":
        compare.run(args.out, settings, ["init.cache_dir=null", *extra])
    if args.command == "curves":
        print(compare.curves(args.out, settings))
        return
    print(compare.table(args.out, settings, args.reference, parameters=True))


if __name__ == "__main__":
    main()
