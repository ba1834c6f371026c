"""Run by test_prototypes_ddp: a 2-process CPU (gloo) fit; every rank saves the prompts it starts with."""

import functools
import sys
from pathlib import Path

import lightning as L
import torch

from spt_lightning.data import TaskDataModule
from spt_lightning.models import PromptedViT
from spt_lightning.module import PromptTuningModule
from spt_lightning.prototypes import PrototypeInit

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_vit  # noqa: E402


class SaveStartPrompts(L.Callback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_start(self, trainer, pl_module):
        torch.save(pl_module.model.prompts.embeddings.detach().cpu(), self.out / f"rank{trainer.global_rank}.pt")


def main(out: Path, devices: int) -> None:
    torch.manual_seed(trainer_seed := 0)
    model = PromptedViT(tiny_vit(num_classes=4), 3, deep=True)
    module = PromptTuningModule(model, 4, functools.partial(torch.optim.AdamW, lr=1e-3))
    task = {"name": "demo/synthetic", "kind": "synthetic", "num_classes": 4, "image_size": 32,
            "transform": "resize", "split_seed": trainer_seed, "sizes": {"train": 32, "val": 8, "test": 8}}
    dm = TaskDataModule(task, img_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=out,
                        callbacks=[PrototypeInit("kmeans", kmeans_iters=5), SaveStartPrompts(out)])
    trainer.fit(module, datamodule=dm)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
