"""Today's baselines (SSF, AdaptFormer, FacT, Adapter+, Houlsby adapters, RepAdapter), the CLIP backbone and
few-shot data: each method's forward against its authors' equations, the re-parameterised forms against the
unmerged ones, what trains, and the promised errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from spt_lightning.backbones import Pretrain, build_vit
from spt_lightning.backbones.checkpoints import BackboneError
from spt_lightning.build import build_method, build_model
from spt_lightning.errors import ConfigError
from spt_lightning.methods import SSF, Adapter, FacT, LoRA, Method, RepAdapter
from spt_lightning.models import PromptedViT
from spt_lightning.train import train

from conftest import compose_cfg, tiny_vit

D, BLOCKS = 64, 3


def _attached(method: Method, prompts: int | None = None, seed: int = 0, **vit) -> PromptedViT:
    torch.manual_seed(seed)
    model = PromptedViT(tiny_vit(num_classes=4, depth=BLOCKS, **vit), prompts, deep=True)
    model.freeze_backbone()
    model.attach(method)
    return model


def _added(model: PromptedViT) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("vit.head.", "prompts."))}


def _perturb(model: PromptedViT, std: float = 0.1) -> None:
    """Move every added tensor off its init, as training would."""
    with torch.no_grad():
        for p in _added(model).values():
            p.add_(std * torch.randn_like(p))


# ---- what each method adds, and its forward against its authors' equations --------------------------------

@pytest.mark.parametrize("method,expected", [
    (SSF(), 2 * (D + BLOCKS * (D + 3 * D + D + D + 4 * D + D) + D)),  # patch proj, 6 ops per block, final norm
    (Adapter(bottleneck=8, position="parallel"), BLOCKS * (D * 8 + 8 + 8 * D + D)),
    (Adapter(bottleneck=8, position="houlsby"), 2 * BLOCKS * (D * 8 + 8 + 8 * D + D)),
    (Adapter(bottleneck=8, position="post", scale="channel"), BLOCKS * (D * 8 + 8 + 8 * D + D + D)),
    (RepAdapter(width=8, groups=2), 2 * BLOCKS * (D * 8 + 8 + D * 4 + D)),
    (FacT(form="tt", rank=4), 2 * D * 4 + BLOCKS * (4 * 4 * 4 + 4 * 16 + 16 * 4)),  # U, V; q k v proj, fc1, fc2
    (FacT(form="tk", rank=4), 2 * D * 4 + 4 ** 3 + 4 * 12 * BLOCKS),  # U, V; C; P (r x 12 per block)
])
def test_each_method_adds_its_authors_tensor_count_and_trains_only_them(method, expected):
    model = _attached(method)
    assert sum(p.numel() for p in _added(model).values()) == expected
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {f"vit.{n}" for n in model.backbone_names if not n.startswith("head.")}


def _block_forward(block: nn.Module, x: torch.Tensor, position: str) -> torch.Tensor:
    """adapter_plus's forward_* (vit_adapter.py L262-303) written out, for a block without layer scale."""
    adapters = block.adapters
    if position == "houlsby":
        a = block.attn(block.norm1(x))
        y = x + a + adapters["attn"](a)
        m = block.mlp(block.norm2(y))
        return y + m + adapters["mlp"](m)
    y = x + block.attn(block.norm1(x))
    m = block.mlp(block.norm2(y))
    if position == "mlp":
        return y + m + adapters["mlp"](m)
    if position == "post":
        z = y + m
        return z + adapters["block"](z)
    return y + m + adapters["parallel"](y)  # AdaptFormer: the adapter reads the MLP's input before norm2


@pytest.mark.parametrize("position", ["mlp", "houlsby", "post", "parallel"])
def test_adapters_sit_where_their_authors_put_them(position):
    model = _attached(Adapter(bottleneck=8, position=position, activation="relu"))
    _perturb(model, 0.5)
    model.eval()
    block, x = model.vit.blocks[1], torch.randn(2, 7, D)
    torch.testing.assert_close(block(x), _block_forward(block, x, position))


@pytest.mark.parametrize("method", [Adapter(bottleneck=8, position="parallel", scale=0.1, activation="relu",
                                            dropout=0.1), Adapter(bottleneck=8, position="post"),
                                    RepAdapter(), FacT(form="tt", rank=4), FacT(form="tk", rank=4)])
def test_zero_initialised_methods_start_as_the_frozen_model(method):
    x = torch.randn(2, 3, 32, 32)
    frozen = _attached(Method("linear")).eval()
    adapted = _attached(method).eval()
    assert torch.equal(adapted(x), frozen(x))


def test_adapter_plus_init_and_channel_scale_follow_its_code():
    """Houlsby init (truncated normal, std 0.01 within 2 std), zero biases, a per-channel scale of ones."""
    model = _attached(Adapter(bottleneck=8, position="post", scale="channel", init="houlsby"))
    adapter = model.vit.blocks[0].adapters["block"]
    for layer in (adapter.down, adapter.up):
        assert layer.weight.abs().max() <= 0.02 and 0.004 < layer.weight.std() < 0.012
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    assert torch.equal(adapter.scale.data, torch.ones(D))


def test_ssf_scales_and_shifts_each_operation_as_its_code():
    """SSF's ssf_ada after fc1 (models/vision_transformer.py L159-160): the hooked output is W x + b, then
    scaled and shifted per channel; init N(1, .02) and N(0, .02)."""
    model = _attached(SSF())
    fc1 = model.vit.blocks[0].mlp.fc1
    x = torch.randn(3, D)
    torch.testing.assert_close(fc1(x), nn.functional.linear(x, fc1.weight, fc1.bias) * fc1.ssf_scale + fc1.ssf_shift)
    scales = torch.cat([p for n, p in _added(model).items() if n.endswith("ssf_scale")])
    assert abs(scales.mean() - 1) < 0.01 and 0.015 < scales.std() < 0.025


def test_fact_tk_increment_of_fc1_is_the_authors_reshape():
    """fact_tk.py L91-97: h += V(dropout(U(x) @ fc1_c).reshape(B, N, 4, r)).reshape(B, N, 4C) * s with
    fc1_c = (C @ P[:, idx+4 : idx+12])[:, :, :4].reshape(r, 4r), idx = 12 per block."""
    model = _attached(FacT(form="tk", rank=4, scale=2.0))
    _perturb(model, 0.5)
    model.eval()
    f, block = model.vit.fact, 1
    x = torch.randn(2, 5, D)
    c = f.c @ f.p[:, 12 * block + 4:12 * block + 12]
    fc1_c = c[:, :, :4].reshape(4, 16)
    expected = f.v((f.u(x) @ fc1_c).reshape(2, 5, 4, 4)).reshape(2, 5, 4 * D) * 2.0
    fc1 = model.vit.blocks[block].mlp.fc1
    torch.testing.assert_close(fc1(x) - nn.functional.linear(x, fc1.weight, fc1.bias), expected)


# ---- re-parameterisation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", [SSF(), RepAdapter(), RepAdapter(width=8, groups=4)])
def test_merged_model_gives_the_unmerged_logits_with_the_plain_vits_modules(method):
    model = _attached(method, prompts=2)
    _perturb(model, 0.2)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    before = model(x)
    method.merge(model)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    assert not _added(model)  # nothing of the method is left: the plain ViT's tensors (prompts and head aside)
    assert all(not m._forward_hooks for m in model.vit.modules())
    with pytest.raises(ConfigError, match="merged already"):
        method.merge(model)


def test_a_method_that_does_not_fold_says_so():
    model = _attached(LoRA(rank=2))
    with pytest.raises(ConfigError, match="method=lora does not fold .* ssf and repadapter"):
        LoRA(rank=2).merge(model)


# ---- training mode: what a method adds trains in train mode; drop-path where the recipe builds it ------------

def test_added_modules_and_drop_path_follow_the_runs_mode_while_the_backbone_stays_in_eval():
    model = _attached(Adapter(bottleneck=8, position="parallel", dropout=0.1), drop_path_rate=0.1)
    model.train()  # (timm's drop-path grows with depth: the last block has it)
    assert model.vit.blocks[0].adapters.training and model.vit.blocks[-1].drop_path1.training
    assert not model.vit.blocks[0].attn.training and not model.vit.blocks[0].mlp.training
    model.eval()
    assert not model.vit.blocks[0].adapters.training and not model.vit.blocks[-1].drop_path1.training


# ---- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override,key", [
    ("method.position=middle", "method.position"), ("method.bottleneck=0", "method.bottleneck"),
    ("method.scale=0", "method.scale"), ("method.activation=tanh", "method.activation"),
])
def test_bad_adapter_options_name_the_key(tmp_path, override, key):
    cfg = compose_cfg(tmp_path, ["method=adaptformer", override])
    with pytest.raises(ConfigError, match=key):
        build_method(cfg)


@pytest.mark.parametrize("method,override,message", [
    ("repadapter", "method.groups=3", "method.groups=3 does not divide method.width=8"),
    ("fact_tt", "method.form=cp", "method.form='cp': expected one of tt, tk"),
    ("fact_tk", "method.rank=0", "method.rank=0"),
])
def test_bad_method_options_stop_with_one_line(tmp_path, method, override, message):
    cfg = compose_cfg(tmp_path, [f"method={method}", override])
    with pytest.raises(ConfigError, match=message) as err:
        build_method(cfg)
    assert "\n" not in str(err.value)


# ---- the authors' per-task values ----------------------------------------------------------------------------

@pytest.mark.parametrize("overrides,expected", [
    # FacT/configs/tt/dtd.yaml: rank 8, scale 0.01; configs/tk/svhn.yaml: rank 32, scale 100
    (["task=vtab/dtd", "method=fact_tt", "recipe=fact"], {"method.rank": 8, "method.scale": 0.01}),
    (["task=vtab/svhn", "method=fact_tk", "recipe=fact"], {"method.rank": 32, "method.scale": 100.0}),
    # RepAdapter configs/repblock/cifar.yaml: scale 0.1
    (["task=vtab/cifar100", "method=repadapter", "recipe=repadapter"], {"method.scale": 0.1}),
    # SSF train_scripts/vit/vtab/clevr_dist/train_ssf.sh: --lr 5e-2 --weight-decay 5e-2 --drop-path 0.1
    (["task=vtab/clevr_dist", "method=ssf", "recipe=ssf"],
     {"model.optimizer.lr": 5e-2, "model.optimizer.weight_decay": 5e-2, "backbone.drop_path_rate": 0.1,
      "pretrain.mean": [0.5, 0.5, 0.5]}),
    (["task=vtab/dtd", "method=ssf", "recipe=ssf"], {"model.optimizer.lr": 5e-3, "backbone.drop_path_rate": 0.0}),
    # a task the authors did not tune gets the method's default
    (["method=repadapter", "recipe=repadapter"], {"method.scale": 1.0}),
])
def test_recipes_carry_each_authors_per_task_values(tmp_path, overrides, expected):
    from omegaconf import OmegaConf

    cfg = compose_cfg(tmp_path, overrides, fast=False)
    for key, value in expected.items():
        got = OmegaConf.select(cfg, key)
        assert (list(got) if key.endswith("mean") else got) == value, key


# ---- end to end ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("method", ["ssf", "adaptformer", "fact_tt", "fact_tk", "adapter_plus", "adapter_houlsby",
                                    "repadapter"])
def test_each_baseline_runs_the_demo_pipeline(tmp_path, method):
    cfg = compose_cfg(tmp_path, [f"method={method}"])
    results = train(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    assert results["status"] == "ok" and saved["method"] == method and saved["parameters"]["learnable_without_head"] > 0


# ---- few-shot data ------------------------------------------------------------------------------------------

def _datamodule(tmp_path, *overrides):
    from spt_lightning.build import build_datamodule

    cfg = compose_cfg(tmp_path, list(overrides))
    return build_datamodule(cfg, Pretrain())


def test_shots_draw_k_images_per_class_with_their_seed(tmp_path):
    dm = _datamodule(tmp_path, "data.shots=2")
    chosen = dm.training_set(None)
    labels = [chosen.dataset.label(i) for i in chosen.indices]
    assert sorted(set(labels)) == list(range(dm.task["num_classes"])) and all(labels.count(c) == 2 for c in set(labels))
    again = _datamodule(tmp_path, "data.shots=2").training_set(None).indices
    other = _datamodule(tmp_path, "data.shots=2", "data.shot_seed=1").training_set(None).indices
    assert chosen.indices == again and chosen.indices != other


def test_too_many_shots_name_the_smallest_class(tmp_path):
    dm = _datamodule(tmp_path, "data.shots=1000")
    with pytest.raises(ConfigError, match=r"data.shots=1000: class \d+ has \d+ training image\(s\); choose data.shots <= \d+"):
        dm.training_set(None)


def test_a_k_shot_run_records_its_shots_and_seed(tmp_path):
    cfg = compose_cfg(tmp_path, ["data.shots=2", "data.shot_seed=3"])
    train(cfg)
    splits = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())["splits"]
    assert splits["shots"] == 2 and splits["shot_seed"] == 3 and not splits["standard"]
    assert "2 training image(s) per class drawn with data.shot_seed=3" in splits["how"]


# ---- CLIP ---------------------------------------------------------------------------------------------------

CLIP_TINY = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2)


def _openai_layout(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm CLIP ViT's tensors in OpenAI's CLIP layout (the inverse of timm's _convert_openai_clip), with a
    text tower beside them as in a full CLIP checkpoint."""
    swaps = [("patch_embed.proj", "conv1"), ("norm_pre", "ln_pre"), ("blocks.", "transformer.resblocks."),
             ("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.qkv.", "attn.in_proj_"), ("attn.proj", "attn.out_proj"),
             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]
    out = {"logit_scale": torch.tensor(4.6), "token_embedding.weight": torch.randn(10, 32),
           "transformer.resblocks.0.ln_1.weight": torch.ones(32)}  # text tower
    for k, v in state_dict.items():
        if k == "cls_token":
            out["visual.class_embedding"] = v[0, 0]
        elif k == "pos_embed":
            out["visual.positional_embedding"] = v[0]
        elif k == "head.weight":
            out["visual.proj"] = v.t()
        elif k.startswith("norm."):
            out[f"visual.ln_post.{k[5:]}"] = v
        elif k != "head.bias":
            for old, new in swaps:
                k = k.replace(old, new)
            out[f"visual.{k}"] = v
    return out


def _clip_vit(pretrain: Pretrain, num_classes: int = 3, **over) -> nn.Module:
    return build_vit("vit_base_patch16_clip_quickgelu_224", num_classes, pretrain=pretrain, **{**CLIP_TINY, **over})


def test_pretrain_clip_loads_an_openai_layout_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = _clip_vit(Pretrain(), num_classes=16)  # CLIP's projection to a 16-d joint space as its head
    file = tmp_path / "clip.pt"
    torch.save(_openai_layout(source.state_dict()), file)
    pretrain = Pretrain(name="clip", source="file", file=str(file), format="clip", tag="openai")
    vit = _clip_vit(pretrain)
    pretrain.load(vit)
    ours, theirs = vit.state_dict(), source.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not k.startswith("head."))
    assert vit.head.out_features == 3  # CLIP's projection dropped: a fresh head
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(vit.forward_features(x), source.forward_features(x))


def test_pretrain_clip_is_composed_with_clips_normalisation(tmp_path):
    cfg = compose_cfg(tmp_path, ["pretrain=clip"], fast=False)
    assert cfg.backbone.arch == "vit_base_patch16_clip_quickgelu_224" and cfg.pretrain.format == "clip"
    mean, std = Pretrain(**{k: v for k, v in cfg.pretrain.items() if k != "_target_"}).normalisation(cfg.backbone.arch)
    assert mean == pytest.approx([0.48145466, 0.4578275, 0.40821073]) and std == pytest.approx([0.26862954, 0.26130258, 0.27577711])


def test_a_clip_checkpoint_of_another_width_stops_with_one_line(tmp_path):
    file = tmp_path / "clip_wide.pt"
    torch.save(_openai_layout(_clip_vit(Pretrain(), embed_dim=64).state_dict()), file)
    pretrain = Pretrain(name="clip", source="file", file=str(file), format="clip", tag="openai")
    with pytest.raises(BackboneError, match="does not fit backbone.arch=.*Choose the backbone= these weights") as err:
        pretrain.load(_clip_vit(pretrain))
    assert "\n" not in str(err.value)
