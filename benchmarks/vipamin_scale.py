"""VIPAMIN's two parts against the tokens they join, per layer: mean L2 norm of the patch tokens entering
block i, of VIPAMIN's matching part, of its orthogonal part (``init.vipamin_values``: the block whose value
projection maps it, and the smallest singular value of that projection) and of VPT's xavier prompts.

    python benchmarks/vipamin_scale.py [hydra overrides, e.g. task=vtab/dtd pretrain=mae init.vipamin_values=own]

Its orthogonal part maps a value vector back through ``pinv(W_V)`` (as VIPAMIN's code does), so its
norm follows the conditioning of each block's value projection, not the tokens' scale;
``init.vipamin_orth_scale=match|tokens`` rescales it to the matching part's or the tokens' norm.
"""

from __future__ import annotations

import sys

import torch
from spt_lightning.build import build, build_datamodule, build_model
from spt_lightning.config import compose_train
from spt_lightning.prototypes.vipamin import first_images, matching, orthogonal, value_block


def main(overrides: list[str]) -> None:
    cfg = compose_train(["method=spt_deep", "prompt.init=vipamin", *overrides])
    pretrain = build(cfg.pretrain, _convert_="all")
    datamodule = build_datamodule(cfg, pretrain)
    datamodule.setup("fit")
    model = build_model(cfg, pretrain).eval()
    pretrain.load(model.vit)
    images = first_images(datamodule.train_dataloader(), cfg.init.vipamin_images)
    with torch.no_grad():
        match = matching(model, images, cfg.init.vipamin_k)
        values = cfg.init.vipamin_values
        orth = orthogonal(model, images, torch.Generator().manual_seed(cfg.init.seed), values)
        tokens = [x[:, model.patch_slice].float().norm(dim=-1).mean().item()
                  for x in model.block_sequences(images, model.prompts.num_layers)]
        xavier = model.prompts.embeddings.detach().float().norm(dim=-1).mean(-1)
    print(f"{cfg.backbone.arch} ({cfg.pretrain.name}), task {cfg.task.name}, {len(images)} images, "
          f"K={cfg.init.vipamin_k}, init.vipamin_values={values}; mean L2 norm per layer")
    print("| layer | W_V of block | its smallest singular value | patch tokens | matching | orthogonal "
          "| orthogonal / tokens | xavier |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    dim = model.vit.embed_dim
    for i, token in enumerate(tokens):
        block = value_block(i, len(model.vit.blocks), values)
        sigma = torch.linalg.svdvals(model.vit.blocks[block].attn.qkv.weight[2 * dim:].float()).min().item()
        m, o = match[i].norm(dim=-1).mean().item(), orth[i].norm(dim=-1).mean().item()
        print(f"| {i} | {block} | {sigma:.2g} | {token:.3g} | {m:.3g} | {o:.3g} | {o / token:.2g}x | {xavier[i]:.3g} |")


if __name__ == "__main__":
    main(sys.argv[1:])
