"""What the classification head reads: the feature each lineage's code pools from the last block.

The papers differ here, and the difference moves self-supervised results by points (SPT-shallow's P = 100
prompts are a third of MAE's pooled tokens):

- ``cls_token``: the cls token after the pretrained final norm (timm ``global_pool="token"``). VPT's and
  SPT's supervised and MoCo v3 code (SPT ``Models/vpt.py`` L35-36: ``x = self.norm(x); out = x[:, 0]``).
- ``patch_mean``: the mean of the patch tokens (prompts excluded), then the pretrained final norm (timm
  ``global_pool="avg"``, its ``fc_norm`` holding the checkpoint's ``norm``).
- ``prompt_patch_mean``: the mean of every token but the cls token -- prompts and patches, as the last
  block leaves them -- then the pretrained final norm. SPT's MAE code (``Models/MAE_vpt.py`` L38-40,
  ``Models/MAE_vpt_deep.py`` L51-53: ``x[:, 1:, :].mean(dim=1)``, then ``self.norm``; ``train_MAE.py``
  L605-606: ``--global_pool`` on by default, L256 asserts that ``norm`` is loaded from the checkpoint).
- ``prompt_patch_mean_plain_norm``: the same mean, then a LayerNorm without affine: VPT's MAE code
  (KMnP/vpt ``src/models/vit_prompt/vit_mae.py`` L119-121 with ``VIT_POOL_TYPE="original"``: a fresh
  ``fc_norm`` -- the checkpoint's ``norm`` is deleted, ``vit_backbones/vit_mae.py`` L21-26 -- frozen at
  weight 1, bias 0 by the prompt transfer, ``vit_models.py`` L103-106).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadFeature:
    """One way of pooling the last block's tokens into the head's input.

    Args:
        name: The config value (``pretrain.head_feature``).
        timm_pool: How timm builds the ViT for it: ``token`` (a final norm over every token, the cls
            token pooled) or ``avg`` (no final norm; patch tokens averaged, then ``fc_norm``).
        with_prompts: The mean includes the prompts' outputs (the project pools them itself).
        affine: The norm after the mean keeps the checkpoint's scale and shift (``False``: plain LayerNorm).
        lineage: Whose code uses it, for docs and errors.
    """

    name: str
    timm_pool: str
    with_prompts: bool = False
    affine: bool = True
    lineage: str = ""


HEAD_FEATURES = {h.name: h for h in (
    HeadFeature("cls_token", "token", lineage="VPT and SPT, supervised and MoCo v3"),
    HeadFeature("patch_mean", "avg", lineage="timm's average pooling (MAE fine-tuning's fc_norm)"),
    HeadFeature("prompt_patch_mean", "token", with_prompts=True, lineage="SPT's and GatedPT's MAE code"),
    HeadFeature("prompt_patch_mean_plain_norm", "token", with_prompts=True, affine=False,
                lineage="VPT's MAE code"),
)}
