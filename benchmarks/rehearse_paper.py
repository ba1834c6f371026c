"""A rehearsal of every paper experiment at demo scale on this machine (`make rehearse`): each experiment of
experiments/paper/ with the bundled DINOv2 ViT-S/14 on Animal-MNIST (112 px, 2 epochs, 500 test images; the
model-size study on tiny random ViTs of depth 2, 4 and 6, the sizes a CPU holds), then `report` over all of
them: the paper's tables and figures and the claims section, end to end. Its figures prove the pipeline, not
the paper: never read them as results.

    python benchmarks/rehearse_paper.py --out logs/rehearsal      # about 45 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

DEMO = ["task=demo/animal_mnist", "pretrain=bundled", "trainer.max_epochs=2", "task.sizes.test=500",
        "init.cache_dir=null"]
# experiment -> (command, its demo-scale overrides): `-m` runs one run per setting, `tune` a study
TWINS = {
    "table1": ("-m", DEMO),
    "table2_mae": ("tune", [*DEMO, "--seeds", "1"]),
    "table3": ("tune", [*DEMO, "--seeds", "1"]),
    "figure1_nmi": ("-m", [*DEMO, "trainer.max_epochs=3"]),
    "figure3_prompt_length": ("-m", DEMO),
    "figure3_model_size": ("-m", ["task=demo/animal_mnist", "pretrain=random", "backbone=vit_tiny_test",
                                  "backbone.depth=2,4,6", "trainer.max_epochs=2",
                                  "task.sizes.test=500", "init.cache_dir=null"]),
    "training_data": ("-m", DEMO),
    "target_data": ("-m", DEMO),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("logs/rehearsal"))
    parser.add_argument("--only", nargs="*", default=list(TWINS), choices=list(TWINS))
    args = parser.parse_args()
    for name in args.only:
        kind, overrides = TWINS[name]
        folder = args.out / name
        if kind == "tune":
            command = [sys.executable, "-m", "spt_lightning.tune", f"experiment=paper/{name}", *overrides,
                       "--out", str(folder)]
        else:
            command = [sys.executable, "-m", "spt_lightning", "-m", f"experiment=paper/{name}", *overrides,
                       f"hydra.sweep.dir={folder}"]
        print("==", " ".join(command[1:]), flush=True)
        subprocess.run(command, check=False)
    return subprocess.run([sys.executable, "-m", "spt_lightning.report", str(args.out), "--out",
                           str(args.out / "report")]).returncode


if __name__ == "__main__":
    sys.exit(main())
