"""Run by the DDP tests: a 2-process CPU (gloo) fit and test. Every rank saves the prompts it starts
with and how many val / test images it scored."""

import functools
import json
import sys
from pathlib import Path

import lightning as L
import torch

from spt_lightning.callbacks import PrototypeInit
from spt_lightning.data import TaskDataModule
from spt_lightning.data.families import Synthetic
from spt_lightning.models import PromptedViT
from spt_lightning.module import PromptTuningModule

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_vit  # noqa: E402


class Record(L.Callback):
    def __init__(self, out: Path):
        self.out, self.scored = out, {"val": 0, "test": 0}

    def on_train_start(self, trainer, pl_module):
        torch.save(pl_module.model.prompts.embeddings.detach().cpu(), self.out / f"rank{trainer.global_rank}.pt")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.scored["val"] += 0 if trainer.sanity_checking else len(batch[1])

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self.scored["test"] += len(batch[1])

    def on_test_end(self, trainer, pl_module):
        (self.out / f"scored{trainer.global_rank}.json").write_text(json.dumps(self.scored))


def main(out: Path, devices: int) -> None:
    torch.manual_seed(trainer_seed := 0)
    model = PromptedViT(tiny_vit(num_classes=4), 3, deep=True)
    module = PromptTuningModule(model, 4, functools.partial(torch.optim.AdamW, lr=1e-3))
    task = {"name": "demo/synthetic", "family": Synthetic(), "num_classes": 4, "image_size": 32,
            "transform": "resize", "split_seed": trainer_seed, "sizes": {"train": 32, "val": 63, "test": 63}}
    dm = TaskDataModule(task, img_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_epochs=1, limit_train_batches=1, logger=False, num_sanity_val_steps=0,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=out,
                        callbacks=[PrototypeInit("kmeans", kmeans_iters=5), Record(out)])
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
