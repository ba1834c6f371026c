import pytest
import torch

from spt_lightning.backbones import BackboneError, Pretrain, build_vit, load_pretrained

from conftest import TINY, tiny_vit

ARCH = "vit_tiny_patch16_224"
KW = {k: v for k, v in TINY.items() if k != "img_size"}


def _built(arch, num_classes, img_size, **kwargs):
    """As a run builds a backbone: the architecture for the weights (``build_vit``), then ``Pretrain.load``."""
    pretrain = Pretrain(**{k: kwargs.pop(k) for k in ("source", "tag", "file", "format", "head_feature", "strict", "hint")
                           if k in kwargs})
    vit = build_vit(arch, num_classes=num_classes, img_size=img_size, pretrain=pretrain, **kwargs)
    pretrain.load(vit)
    return vit


def _save(tmp_path, obj, name="w.pth"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("wrap", [None, "model", "state_dict"])
def test_file_checkpoint_loads_and_matches_source(tmp_path, wrap):
    torch.manual_seed(0)
    source = tiny_vit(num_classes=1000).eval()
    sd = source.state_dict()
    path = _save(tmp_path, {wrap: sd} if wrap else sd)
    model = _built(ARCH, num_classes=7, img_size=32, source="file", file=str(path), **KW).eval()
    assert model.head.out_features == 7
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.forward_features(x), source.forward_features(x))


def test_position_embeddings_resampled_to_new_size(tmp_path):
    torch.manual_seed(0)
    source = tiny_vit(img_size=64)  # 16x16 grid
    path = _save(tmp_path, source.state_dict())
    model = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), **KW)
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 64)
    torch.testing.assert_close(model.pos_embed[:, :1], source.pos_embed[:, :1])  # cls position kept
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_wrong_architecture_is_an_error_unless_not_strict(tmp_path):
    path = _save(tmp_path, tiny_vit(depth=2).state_dict())
    with pytest.raises(BackboneError, match="pretrain.strict=false"):
        _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), **KW)  # depth 3 wants blocks.2
    model = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), strict=False, **KW)
    assert len(model.blocks) == 3


def test_missing_and_corrupt_checkpoint_files(tmp_path):
    with pytest.raises(BackboneError, match="checkpoint not found"):
        load_pretrained(tiny_vit(), tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneError, match="not a readable PyTorch checkpoint"):
        load_pretrained(tiny_vit(), bad)


def test_non_vit_arch_is_refused():
    with pytest.raises(BackboneError, match="VisionTransformer"):
        _built("resnet18", num_classes=3, img_size=32)


# ---- pretraining releases in their own formats ------------------------------------------------------------


def _source_and_input():
    torch.manual_seed(0)
    return tiny_vit(num_classes=0).eval(), torch.randn(2, 3, 32, 32)


def test_mae_release_layout(tmp_path):
    source, x = _source_and_input()
    sd = {k: v for k, v in source.state_dict().items()}
    sd |= {"mask_token": torch.zeros(1, 1, 64), "decoder_embed.weight": torch.zeros(32, 64),
           "decoder_pos_embed": torch.zeros(1, 65, 32)}
    path = _save(tmp_path, {"model": sd, "args": __import__("argparse").Namespace(lr=1e-3), "epoch": 799})
    model = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), format="mae", **KW).eval()
    torch.testing.assert_close(model.forward_features(x), source.forward_features(x))


def test_mae_with_average_pooling_moves_the_final_norm_to_fc_norm(tmp_path):
    source, x = _source_and_input()
    with torch.no_grad():
        source.norm.weight.uniform_(0.5, 1.5)
    path = _save(tmp_path, {"model": source.state_dict()})
    model = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), format="mae",
                      head_feature="patch_mean", **KW).eval()
    torch.testing.assert_close(model.fc_norm.weight, source.norm.weight)
    pooled = source.norm(source.blocks(source.norm_pre(source._pos_embed(source.patch_embed(x))))[:, 1:].mean(1))
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), pooled)


def test_mocov3_takes_the_base_encoder(tmp_path):
    source, x = _source_and_input()
    other = tiny_vit(num_classes=0)
    sd = {f"module.base_encoder.{k}": v for k, v in source.state_dict().items()}
    sd |= {f"module.momentum_encoder.{k}": v for k, v in other.state_dict().items()}
    sd |= {"module.base_encoder.head.0.weight": torch.zeros(128, 64), "module.predictor.0.weight": torch.zeros(8, 8)}
    path = _save(tmp_path, {"epoch": 300, "arch": "vit_base", "state_dict": sd, "optimizer": {"state": {}}})
    model = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), format="mocov3", **KW).eval()
    torch.testing.assert_close(model.forward_features(x), source.forward_features(x))


def test_mocov3_linear_probe_checkpoint_gives_the_same_encoder_and_says_its_head_was_dropped(tmp_path, caplog):
    source, x = _source_and_input()
    sd = {f"module.{k}": v for k, v in source.state_dict().items() if not k.startswith("head.")}
    sd |= {"module.head.weight": torch.ones(1000, 64), "module.head.bias": torch.ones(1000)}  # main_lincls.py's layout
    path = _save(tmp_path, {"epoch": 90, "arch": "vit_base", "state_dict": sd, "best_acc1": 76.7,
                            "optimizer": {"state": {}}}, name="linear-vit-b-300ep.pth.tar")
    with caplog.at_level("INFO"):
        model = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), format="mocov3", **KW).eval()
    torch.testing.assert_close(model.forward_features(x), source.forward_features(x))
    assert model.head.weight.shape == (3, 64) and not torch.equal(model.head.weight, torch.ones(3, 64))
    (line,) = [r.getMessage() for r in caplog.records if "linear-probe" in r.getMessage()]
    assert "head dropped" in line and "sanity_check" in line


def test_a_checkpoint_of_neither_mocov3_format_names_both(tmp_path):
    path = _save(tmp_path, {"state_dict": {"encoder.layer.0.weight": torch.zeros(2)}}, name="other.pth.tar")
    with pytest.raises(BackboneError, match=r"neither MoCo v3 checkpoint.*vit-b-300ep.pth.tar.*linear-vit-b-300ep"):
        _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), format="mocov3", **KW)


def test_ddp_prefixed_timm_checkpoint(tmp_path):
    source, x = _source_and_input()
    path = _save(tmp_path, {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}})
    model = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(path), **KW).eval()
    torch.testing.assert_close(model.forward_features(x), source.forward_features(x))


def test_file_source_without_file_names_what_is_needed():
    with pytest.raises(BackboneError, match="pretrain.file is not set.*vit-b-300ep"):
        _built(ARCH, num_classes=3, img_size=32, source="file", hint="vit-b-300ep.pth.tar", **KW)


def test_hub_unreachable_names_the_tag_and_the_local_file_option(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1: no waiting
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent-spt-test-cache")
    with pytest.raises(BackboneError, match=r"vit_small_patch16_224.dino.*pretrain.file="):
        _built("vit_small_patch16_224", num_classes=3, img_size=32, source="timm", tag="dino")


def test_hub_weights_load_into_the_built_architecture_as_timm_loads_them(tmp_path, monkeypatch):
    """The architecture is built first (no download), the tag's weights later: the same tensors as timm's
    ``create_model(pretrained=True)``, position grid resampled. timm's own file override stands in for the hub."""
    import huggingface_hub
    import timm

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # building must not try the hub
    torch.manual_seed(0)
    path = _save(tmp_path, tiny_vit(img_size=64, num_classes=21843).state_dict())
    kw = dict(KW, pretrained_cfg_overlay={"file": str(path)})
    pretrain = Pretrain(source="timm", tag="augreg_in21k", head_feature="cls_token")
    vit = build_vit(ARCH, num_classes=3, img_size=32, pretrain=pretrain, **kw)
    fresh = {k: v.clone() for k, v in vit.state_dict().items()}
    pretrain.load(vit)
    timms = timm.create_model(f"{ARCH}.augreg_in21k", pretrained=True, num_classes=3, img_size=32, **kw).state_dict()
    backbone = [k for k in timms if not k.startswith("head.")]
    assert not torch.equal(fresh["pos_embed"], vit.state_dict()["pos_embed"])  # the load changed the weights
    for name in backbone:
        torch.testing.assert_close(vit.state_dict()[name], timms[name], rtol=0, atol=0, msg=name)
    assert vit.head.out_features == 3


def test_tag_that_the_arch_lacks():
    with pytest.raises(BackboneError, match="timm has no weights 'vit_small_patch14_dinov2.mae'"):
        _built("vit_small_patch14_dinov2", num_classes=3, img_size=112, source="timm", tag="mae")


def test_local_file_wins_over_the_hub_and_keeps_the_tag_config(tmp_path):
    torch.manual_seed(0)
    source = tiny_vit(num_classes=0)
    path = _save(tmp_path, source.state_dict())
    model = _built("vit_tiny_patch16_224", num_classes=3, img_size=32, source="timm", tag="augreg_in21k",
                   file=str(path), **KW)
    assert model.pretrained_cfg["tag"] == "augreg_in21k"
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


# ---- Google's original JAX .npz release ---------------------------------------------------------------------


def _save_google_npz(vit, path):
    """The layout of Google's ViT release (``imagenet21k_ViT-B_16.npz``), written from a timm model."""
    import numpy as np

    d, heads = vit.embed_dim, vit.blocks[0].attn.num_heads
    w = {"embedding/kernel": vit.patch_embed.proj.weight.permute(2, 3, 1, 0), "embedding/bias": vit.patch_embed.proj.bias,
         "cls": vit.cls_token, "Transformer/posembed_input/pos_embedding": vit.pos_embed,
         "Transformer/encoder_norm/scale": vit.norm.weight, "Transformer/encoder_norm/bias": vit.norm.bias,
         "pre_logits/kernel": torch.zeros(d, d), "head/kernel": torch.zeros(d, 21843), "head/bias": torch.zeros(21843)}
    for i, b in enumerate(vit.blocks):
        p, mha = f"Transformer/encoderblock_{i}/", f"Transformer/encoderblock_{i}/MultiHeadDotProductAttention_1/"
        for name, weight, bias in zip(("query", "key", "value"), b.attn.qkv.weight.chunk(3), b.attn.qkv.bias.chunk(3)):
            w[f"{mha}{name}/kernel"] = weight.T.reshape(d, heads, -1)
            w[f"{mha}{name}/bias"] = bias.reshape(heads, -1)
        w[f"{mha}out/kernel"] = b.attn.proj.weight.reshape(d, heads, -1).permute(1, 2, 0)
        w[f"{mha}out/bias"] = b.attn.proj.bias
        for ln, norm in (("LayerNorm_0", b.norm1), ("LayerNorm_2", b.norm2)):
            w[f"{p}{ln}/scale"], w[f"{p}{ln}/bias"] = norm.weight, norm.bias
        for r, fc in enumerate((b.mlp.fc1, b.mlp.fc2)):
            w[f"{p}MlpBlock_3/Dense_{r}/kernel"], w[f"{p}MlpBlock_3/Dense_{r}/bias"] = fc.weight.T, fc.bias
    np.savez(path, **{k: v.detach().numpy() for k, v in w.items()})
    return path


@pytest.mark.parametrize("pool", ["cls_token", "patch_mean"])
def test_google_npz_loads_as_the_same_weights_saved_by_torch(tmp_path, pool):
    torch.manual_seed(0)
    source = tiny_vit(img_size=64)  # 16x16 grid in the file, 8x8 in the model: resampled like any checkpoint
    with torch.no_grad():  # no tensor keeps its constructor value (norms start at 1 and 0)
        for p in source.parameters():
            p.add_(0.1 * torch.randn_like(p))
    npz = _save_google_npz(source, tmp_path / "imagenet21k_tiny.npz")
    pth = _save(tmp_path, source.state_dict())
    from_npz = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(npz), head_feature=pool, **KW)
    from_pth = _built(ARCH, num_classes=3, img_size=32, source="file", file=str(pth), head_feature=pool, **KW)
    backbone = {k: v for k, v in from_pth.state_dict().items() if not k.startswith("head.")}
    assert backbone.keys() <= from_npz.state_dict().keys()
    for name, value in backbone.items():
        torch.testing.assert_close(from_npz.state_dict()[name], value, msg=name)
    if pool == "patch_mean":
        torch.testing.assert_close(from_npz.fc_norm.weight, source.norm.weight)


def test_bad_npz_files_are_named(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BackboneError, match="not a readable .npz"):
        load_pretrained(tiny_vit(), bad)
    shallow = _save_google_npz(tiny_vit(depth=2), tmp_path / "shallow.npz")
    with pytest.raises(BackboneError, match="does not fit VisionTransformer.*check backbone.arch"):
        load_pretrained(tiny_vit(), shallow)  # depth 3 looks for encoderblock_2


def test_a_run_on_mocov3s_linear_probe_checkpoint_trains_and_says_the_head_was_dropped(tmp_path, caplog):
    """pretrain=mocov3 pretrain.file=<linear-vit-b-300ep.pth.tar>, as VPT's and SPT's READMEs link it."""
    from test_runs import _run

    vit = tiny_vit(num_classes=1000, depth=2)
    sd = {f"module.{k}": v for k, v in vit.state_dict().items()}  # main_lincls.py: the DDP-wrapped linear model
    path = _save(tmp_path, {"epoch": 90, "arch": "vit_base", "state_dict": sd, "best_acc1": 76.7},
                 name="linear-vit-b-300ep.pth.tar")
    with caplog.at_level("INFO"):
        results = _run(tmp_path / "run", "pretrain=mocov3", f"pretrain.file={path}", "backbone=vit_tiny_test")
    assert results["status"] == "ok" and results["pretrain"] == "mocov3"
    assert any("linear-probe" in r.getMessage() and "head dropped" in r.getMessage() for r in caplog.records)
