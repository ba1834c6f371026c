"""VIPAMIN against a line-by-line transcription of its authors' scripts (load_match_deep.py, load_orth_deep.py)."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import tiny_vit
from test_prototypes import _fit

from spt_lightning.callbacks import PrototypeInit
from spt_lightning.errors import ConfigError
from spt_lightning.models import PromptedViT
from spt_lightning.prototypes import PrototypeError
from spt_lightning.prototypes.vipamin import matching, orthogonal, value_block, vipamin


def _model(length=3, deep=True):
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(num_classes=4), length, deep=deep)
    model.freeze_backbone()
    return model.eval()


def _their_matching(model, images, k):
    """load_match_deep.py: qkv outputs and block outputs of the prompted model; X of block 0 = pos_drop."""
    p, blocks = model.prompts.length, model.vit.blocks[: model.prompts.num_layers]
    qkv_out, block_out = {}, {}
    hooks = [b.attn.qkv.register_forward_hook(lambda m, a, o, i=i: qkv_out.__setitem__(i, o)) for i, b in enumerate(blocks)]
    hooks += [b.register_forward_hook(lambda m, a, o, i=i: block_out.__setitem__(i, o)) for i, b in enumerate(blocks)]
    with torch.no_grad():
        model.forward_features(images)
        pos_drop = model.embed(images)
    for h in hooks:
        h.remove()
    out = []
    for block in range(len(blocks)):
        output = qkv_out[block]
        b, n, c3 = output.shape
        c, heads = c3 // 3, blocks[block].attn.num_heads
        qkv = output.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        key = qkv[1].mean(1).mean(0)[1:, :]
        adj = nn.functional.normalize(key, p=2, dim=-1)
        cos = adj @ adj.transpose(-1, -2)
        cos.diagonal(dim1=-1, dim2=-2).fill_(-torch.inf)
        cos[:p, :p].fill_(-torch.inf)
        top = torch.topk(cos, k)[1][:p, :]
        if block == 0:
            x = pos_drop.mean(0)
            out.append(torch.stack([x[idxs + 1 - p].mean(dim=0) for idxs in top[:, :k]]))
        else:
            x = block_out[block - 1].mean(0)
            out.append(torch.stack([x[idxs + 1].mean(dim=0) for idxs in top[:, :k]]))
    return torch.stack(out)


def _their_value_projections(model):
    """load_orth_deep.py's loop, verbatim but for timm's names (``blocks.j`` where theirs is ``enc.blocks.j``):
    every parameter name is tested against every layer by substring, the last match wins."""
    block_num = model.prompts.num_layers
    w_v_dict, v_b_dict = {}, {}
    for n, p in model.vit.named_parameters():
        for i in range(block_num):
            if "qkv.weight" in n and f"blocks.{i}" in n:
                d = p.size(1)
                w_v_dict[i] = p[-d:, :].data
            if "qkv.bias" in n and f"blocks.{i}" in n:
                d = p.size(0) // 3
                v_b_dict[i] = p[-d:].data
    return w_v_dict, v_b_dict


def _their_orthogonal(model, images, random):
    """load_orth_deep.py: attention outputs (before proj) of the prompt-free model; ``random[i]``: layer i's draws."""
    blocks = model.vit.blocks[: model.prompts.num_layers]
    w_v_dict, v_b_dict = _their_value_projections(model)
    attn_out = {}
    hooks = [b.attn.proj.register_forward_pre_hook(lambda m, a, i=i: attn_out.__setitem__(i, a[0]))
             for i, b in enumerate(blocks)]
    with torch.no_grad():
        x = model.embed(images)
        for b in blocks:
            x = b(x)
    for h in hooks:
        h.remove()
    out = []
    for block in range(len(blocks)):
        o = attn_out[block].mean(0)
        _, d = o.shape
        q, _ = torch.linalg.qr(o.T, mode="reduced")
        proj = torch.eye(d) - q @ q.T
        w_v, v_b = w_v_dict[block], v_b_dict[block]
        vectors = []
        for rand_vec in random[block]:
            rand_vec = rand_vec @ w_v.T + v_b
            orth_vec = proj @ rand_vec
            vectors.append((orth_vec - v_b) @ torch.linalg.pinv(w_v))
        out.append(torch.stack(vectors))
    return torch.stack(out)


@pytest.mark.parametrize("deep", [True, False])
@pytest.mark.parametrize("k", [1, 4, 60])
def test_matching_equals_the_authors_script(deep, k):
    model, images = _model(deep=deep), torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = matching(model, images, k)
    torch.testing.assert_close(ours, _their_matching(model, images, k), rtol=1e-5, atol=1e-5)
    assert ours.shape == (3 if deep else 1, 3, 64)


def test_too_large_k_is_refused():
    with pytest.raises(PrototypeError, match="vipamin_k=65 is more than the 64 patch tokens"):
        with torch.no_grad():
            matching(_model(), torch.randn(2, 3, 32, 32), 65)


def test_layer_one_takes_the_value_projection_of_the_authors_loop():
    """12 blocks: their substring match gives layer 1 block 11's W_V and bias (blocks 10 and 11 overwrite
    block 1's), every other layer its own; ``own`` gives each layer its own."""
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(num_classes=4, depth=12), 2, deep=True)
    theirs, _ = _their_value_projections(model)
    for layer in range(12):
        block = value_block(layer, 12, "code")
        assert torch.equal(theirs[layer], model.vit.blocks[block].attn.qkv.weight[128:])
        assert block == (11 if layer == 1 else layer) and value_block(layer, 12, "own") == layer
    assert [value_block(i, 24) for i in (1, 2, 3)] == [19, 23, 3]  # ViT-L: 1 -> 10..19, 2 -> 20..23
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        code = orthogonal(model.eval(), images, torch.Generator().manual_seed(0), "code")
        own = orthogonal(model, images, torch.Generator().manual_seed(0), "own")
    assert not torch.allclose(code[1], own[1]) and torch.equal(code[[0, *range(2, 12)]], own[[0, *range(2, 12)]])


@pytest.mark.parametrize("depth", [3, 12])
def test_orthogonal_equals_the_authors_script(depth):
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(num_classes=4, depth=depth), 3, deep=True).eval()
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = orthogonal(model, images, torch.Generator().manual_seed(7))
    g, bound = torch.Generator().manual_seed(7), math.sqrt(6.0 / (model.prompts.patch_fan_in + 64))
    random = [(torch.rand(3, 64, generator=g) * 2 - 1) * bound for _ in range(depth)]
    with torch.no_grad():
        torch.testing.assert_close(ours, _their_orthogonal(model, images, random), rtol=1e-4, atol=1e-5)


def test_orthogonal_part_is_outside_the_attention_outputs_when_values_are_the_identity():
    """Hand-built: width 128 > 65 tokens (so the outputs span a proper subspace), W_V = I, no value bias:
    the prompts are then the random draws with their component in span(O) removed."""
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(num_classes=4, embed_dim=128), 3, deep=True).eval()
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for block in model.vit.blocks:
            block.attn.qkv.weight[256:] = torch.eye(128)
            block.attn.qkv.bias[256:] = 0
        prompts = orthogonal(model, images, torch.Generator().manual_seed(0))
        outputs = []
        hook = model.vit.blocks[0].attn.proj.register_forward_pre_hook(lambda m, a: outputs.append(a[0]))
        model.vit.blocks[0](model.embed(images))
        hook.remove()
    span = outputs[0].mean(0)  # [65 tokens, 128]
    assert (prompts[0] @ span.T).abs().max() < 1e-4 * span.abs().max()  # orthogonal to every output
    g, bound = torch.Generator().manual_seed(0), math.sqrt(6.0 / (model.prompts.patch_fan_in + 128))
    draws = (torch.rand(3, 128, generator=g) * 2 - 1) * bound
    assert prompts[0].norm() > 0.5 * draws.norm()  # most of a random draw lies outside a 65-dim subspace of 128


def test_vipamin_mixes_both_parts_and_the_callback_caches_it(tmp_path):
    model, images = _model(), torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        both = vipamin(model, images, 4, 0.25, seed=0)
        m, o = matching(model, images, 4), orthogonal(model, images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(both, 0.75 * m + 0.25 * o)

    cb = PrototypeInit("vipamin", vipamin_k=4, vipamin_lambda=0.5, vipamin_images=16, layer0="embedded",
                       cache_dir=str(tmp_path / "cache"))
    start_model = _model(length=2)
    xavier = start_model.prompts.embeddings.detach().clone()
    _, dm, start, _ = _fit(tmp_path, cb, model=start_model)
    assert dm.passes == 1 and start.shape == xavier.shape and not torch.equal(start, xavier)
    cb2 = PrototypeInit("vipamin", vipamin_k=4, vipamin_lambda=0.5, vipamin_images=16, layer0="embedded",
                        cache_dir=str(tmp_path / "cache"))
    _, dm2, start2, _ = _fit(tmp_path, cb2, model=_model(length=2))
    assert dm2.passes == 0 and torch.equal(start2, start)


def test_each_orthogonal_scale_sets_the_norms_it_names():
    """code: as pinv(W_V) gives it; match: every orthogonal prompt at its layer's mean matching-prompt norm;
    tokens: at the mean norm of the patch tokens entering the block (prompt-free). Checked with lambda = 1
    (the orthogonal part alone); the directions are the code's."""
    model, images = _model(), torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        orth = orthogonal(model, images, torch.Generator().manual_seed(0))
        match = matching(model, images, 4)
        tokens = [model.embed(images)[:, 1:].norm(dim=-1).mean()]
        x = model.embed(images)
        for block in model.vit.blocks[:2]:
            x = block(x)
            tokens.append(x[:, 1:].norm(dim=-1).mean())
        forms = {scale: vipamin(model, images, 4, 1.0, seed=0, orth_scale=scale) for scale in ("code", "match", "tokens")}
    torch.testing.assert_close(forms["code"], orth)
    for layer in range(3):
        torch.testing.assert_close(forms["match"][layer].norm(dim=-1), match[layer].norm(dim=-1).mean().expand(3))
        torch.testing.assert_close(forms["tokens"][layer].norm(dim=-1), tokens[layer].expand(3))
        for scale in ("match", "tokens"):
            torch.testing.assert_close(F.normalize(forms[scale][layer], dim=-1), F.normalize(orth[layer], dim=-1))
    # here 65 tokens span all 64 dimensions: the code's part is ~0, rescaled it is not
    assert orth.norm(dim=-1).max() < 1e-2 * torch.stack(tokens).min()


@pytest.mark.parametrize("key, value", [("vipamin_k", 0), ("vipamin_lambda", 1.5), ("vipamin_images", 0),
                                        ("vipamin_values", "block"), ("vipamin_orth_scale", "unit")])
def test_bad_vipamin_settings_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"init.{key}={value!r}: expected"):
        PrototypeInit("vipamin", **{key: value})
