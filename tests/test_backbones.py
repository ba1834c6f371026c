import pytest
import torch

from spt_lightning.backbones import BackboneError, build_vit, load_pretrained

from conftest import TINY, tiny_vit

ARCH = "vit_tiny_patch16_224"
KW = {k: v for k, v in TINY.items() if k != "img_size"}


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
    model = build_vit(ARCH, num_classes=7, img_size=32, source="file", file=str(path), **KW).eval()
    assert model.head.out_features == 7
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.forward_features(x), source.forward_features(x))


def test_position_embeddings_resampled_to_new_size(tmp_path):
    torch.manual_seed(0)
    source = tiny_vit(img_size=64)  # 16x16 grid
    path = _save(tmp_path, source.state_dict())
    model = build_vit(ARCH, num_classes=3, img_size=32, source="file", file=str(path), **KW)
    assert model.pos_embed.shape == (1, 1 + 8 * 8, 64)
    torch.testing.assert_close(model.pos_embed[:, :1], source.pos_embed[:, :1])  # cls position kept
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


def test_wrong_architecture_is_an_error_unless_not_strict(tmp_path):
    path = _save(tmp_path, tiny_vit(depth=2).state_dict())
    with pytest.raises(BackboneError, match="pretrain.strict=false"):
        build_vit(ARCH, num_classes=3, img_size=32, source="file", file=str(path), **KW)  # depth 3 wants blocks.2
    model = build_vit(ARCH, num_classes=3, img_size=32, source="file", file=str(path), strict=False, **KW)
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
        build_vit("resnet18", num_classes=3, img_size=32)
