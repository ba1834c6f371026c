"""The tuning methods (spt_lightning.methods): what each trains, what stays bit-identical, what each
promises at init, and that each runs end to end with its parameter count in results.json."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from spt_lightning.build import build_method, build_model
from spt_lightning.backbones import Pretrain
from spt_lightning.errors import ConfigError
from spt_lightning.methods import Adapter, GatedPrompts, KVPrompts, LoRA, Method
from spt_lightning.models import PromptedViT
from spt_lightning.module import PromptTuningModule
from spt_lightning.schedules import warmup_cosine
from spt_lightning.train import train

from conftest import tiny_vit

pytest.importorskip("peft")

D, BLOCKS, HEADS = 64, 3, 2


def _module(method: Method, length=None, deep=True, seed=0) -> PromptTuningModule:
    """As a run builds it: the module (which freezes the backbone), then the method attached."""
    torch.manual_seed(seed)
    model = PromptedViT(tiny_vit(num_classes=4), length, deep=deep)
    module = PromptTuningModule(model, 4, functools.partial(torch.optim.AdamW, lr=1e-2), scheduler=functools.partial(warmup_cosine, warmup_epochs=0),
                                finetune_backbone=method.trains_backbone)
    model.attach(method)
    return module


def _attached(method: Method, length=None, deep=True, seed=0) -> PromptedViT:
    return _module(method, length, deep, seed).model


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


HEAD = {"vit.head.weight", "vit.head.bias"}


@pytest.mark.parametrize("method,length,expected", [
    (Method("linear"), None, set()),
    (Method("vpt"), 2, {"prompts.embeddings"}),
    (GatedPrompts(), 2, {"prompts.embeddings", "prompt_update.logits"}),
    (KVPrompts(length=3), 2, {"prompts.embeddings"} | {f"vit.blocks.{i}.attn.kv" for i in range(BLOCKS)}),
    (LoRA(rank=4), None, {f"vit.blocks.{i}.attn.lora.{s}.{m}.weight" for i in range(BLOCKS) for s in "qv"
                          for m in ("down", "up")}),
    (LoRA(rank=4, targets=["qkv"]), None, {f"vit.blocks.{i}.attn.qkv.lora_{m}.default.weight" for i in range(BLOCKS)
                                           for m in "AB"}),
    (Adapter(bottleneck=8), None, {f"vit.blocks.{i}.adapters.mlp.{m}.{t}" for i in range(BLOCKS)
                                   for m in ("down", "up") for t in ("weight", "bias")}),
])
def test_each_method_trains_its_tensors_and_the_head_only(method, length, expected):
    deep = not isinstance(method, GatedPrompts)
    assert _trainable(_attached(method, length, deep)) == expected | HEAD


def test_bitfit_trains_every_bias_and_nothing_else():
    from spt_lightning.methods import BitFit

    model = _attached(BitFit())
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert _trainable(model) == biases | HEAD and any("norm" in n for n in biases)
    assert all("norm" not in n for n in _trainable(_attached(BitFit(norms=False))) - HEAD)


def _loader(n=48):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(4, 3, 1, 1, generator=g)[y] + 0.5 * torch.randn(n, 3, 32, 32, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)


@pytest.mark.parametrize("method,length", [(LoRA(rank=4), None), (LoRA(rank=4, targets=["qkv"]), None),
                                           (Adapter(bottleneck=8), None),
                                           (GatedPrompts(gate_init=0.0), 2), (KVPrompts(length=3), 2)])
def test_training_moves_the_methods_tensors_and_leaves_the_rest_bit_identical(tmp_path, method, length):
    module = _module(method, length, deep=not isinstance(method, GatedPrompts))
    model = module.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(module, _loader())
    trainable = _trainable(model)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]) != (name in trainable), name
    assert set(module.trainable_groups()) == ({"head", "added", "prompts"} if length else {"head", "added"})


@pytest.mark.parametrize("method", [LoRA(rank=4), LoRA(rank=4, targets=["qkv"]), Adapter(bottleneck=8)])
def test_lora_and_adapters_start_as_the_frozen_model(method):
    x = torch.randn(2, 3, 32, 32)
    frozen = _attached(Method("linear")).eval()
    adapted = _attached(method).eval()
    assert torch.equal(adapted(x), frozen(x))
    # ... and differ once their zero-initialised half moves
    for name, p in adapted.named_parameters():
        if ".lora_B." in name or ".up.weight" in name:  # (LoRA's q / v updates: lora.q.up.weight)
            torch.nn.init.normal_(p)
    assert not torch.allclose(adapted(x), frozen(x))


def test_lora_scale_is_alpha_over_rank():
    model = _attached(LoRA(rank=4, alpha=2.0, targets=["qkv"])).eval()
    qkv = model.vit.blocks[0].attn.qkv
    torch.nn.init.normal_(qkv.lora_B["default"].weight)
    x = torch.randn(5, D)
    delta = x @ qkv.lora_A["default"].weight.T @ qkv.lora_B["default"].weight.T * 0.5
    torch.testing.assert_close(qkv(x), qkv.base_layer(x) + delta)


def test_lora_adapts_w_q_and_w_v_only_by_default_as_loras_form():
    """LoRA's (and NOAH's) form: rank-r updates of W_q and W_v; k, the rest and the module names untouched."""
    model = _attached(LoRA(rank=4, alpha=2.0)).eval()
    attn = model.vit.blocks[0].attn
    for update in attn.lora.values():
        torch.nn.init.normal_(update.up.weight)
    x = torch.randn(5, D)
    frozen = torch.nn.functional.linear(x, attn.qkv.weight, attn.qkv.bias)
    delta = {s: x @ attn.lora[s].down.weight.T @ attn.lora[s].up.weight.T * 0.5 for s in "qv"}
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    fq, fk, fv = frozen.chunk(3, dim=-1)
    torch.testing.assert_close(q, fq + delta["q"])
    torch.testing.assert_close(v, fv + delta["v"])
    assert torch.equal(k, fk) and isinstance(attn.qkv, torch.nn.Linear)  # VIPAMIN still reads attn.qkv

    def learnable(method):
        return sum(p.numel() for n, p in _attached(method).named_parameters() if p.requires_grad and "head" not in n)

    # the same count in both forms (so the published 0.29 M of ViT-B/16 cannot tell them apart)
    assert learnable(LoRA(rank=8)) == BLOCKS * 2 * (8 * D + D * 8)
    assert learnable(LoRA(rank=8, targets=["qkv"])) == BLOCKS * (8 * D + 3 * D * 8) == learnable(LoRA(rank=8))


def test_gated_prompts_mix_each_blocks_prompt_input_and_output():
    x = torch.randn(2, 3, 32, 32)
    open_gate, vpt = _attached(GatedPrompts(gate_init=-60.0), 2, deep=False), _attached(Method("vpt"), 2, deep=False)
    vpt.load_state_dict(open_gate.state_dict(), strict=False)
    assert torch.equal(open_gate.eval()(x), vpt.eval()(x))  # gate 1: shallow VPT
    shut = _attached(GatedPrompts(gate_init=60.0), 2, deep=False).eval()  # gate 0: blocks 0..L-2 leave the prompts
    n = shut.num_prefix_tokens
    entering = shut.block_sequences(x, BLOCKS)
    for seq in entering:
        torch.testing.assert_close(seq[:, n:n + 2], shut.prompts.embeddings[0].expand(2, -1, -1), rtol=0, atol=0)
    gates = shut.prompt_update.logits
    assert gates.shape == (BLOCKS - 1,) and torch.all(gates == -60.0)


def test_gated_prompts_need_shallow_prompts():
    with pytest.raises(ConfigError, match="prompt.deep=false"):
        _attached(GatedPrompts(), 2, deep=True)


def test_kv_prompts_extend_keys_and_values_and_are_off_for_the_prototype_pass():
    model = _attached(KVPrompts(length=3), 2).eval()
    attn = model.vit.blocks[0].attn
    x = torch.randn(2, 7, D)
    a, kv = attn.attn, attn.kv
    q, k, v = a.qkv(x).reshape(2, 7, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
    k, v = torch.cat([kv.expand(2, -1, -1, -1), k], 2), torch.cat([kv.expand(2, -1, -1, -1), v], 2)
    by_hand = a.proj(F.softmax(q @ k.transpose(-2, -1) * a.scale, -1).matmul(v).transpose(1, 2).reshape(2, 7, D))
    for fused in (False, True):
        a.fused_attn = fused
        torch.testing.assert_close(attn(x), by_hand, rtol=1e-5, atol=1e-5)
    a.fused_attn = False  # (as the frozen model's: the kernels round differently)
    frozen = _attached(Method("vpt"), 2)
    images = torch.randn(2, 3, 32, 32)
    for (_, ours), (_, theirs) in zip(model.block_inputs(images, BLOCKS), frozen.block_inputs(images, BLOCKS)):
        assert torch.equal(ours, theirs)  # the prompt-free backbone: KV prompts off
    assert all(m.enabled for m in model.modules() if hasattr(m, "enabled"))  # and back on after


def test_lora_without_peft_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ConfigError, match=r"pip install 'spt-lightning\[peft\]'"):
        _attached(LoRA(targets=["qkv"]))
    assert _attached(LoRA()).vit.blocks[0].attn.lora  # LoRA's own form (q, v) needs no peft


@pytest.mark.parametrize("bad,key", [("method.rank=0", "method.rank"), ("method.targets=[nope]", "method.targets")])
def test_bad_lora_settings_are_refused(cfg_factory, bad, key):
    cfg = cfg_factory("method=lora", bad)
    with pytest.raises(ConfigError, match=key):
        model = build_model(cfg, Pretrain())
        model.attach(build_method(cfg))


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [("bitfit", []), ("lora", []), ("adapter", []), ("gated_prompts", []),
                                          ("ssf", []), ("fact_tk", []),
                                          ("e2vpt", ["prompt.init=kmeans"])])
def test_every_method_runs_end_to_end_with_its_parameter_count(cfg_factory, method, extra):
    cfg = cfg_factory(f"method={method}", *extra)
    results = train(cfg)
    saved = json.loads((Path(cfg.paths.output_dir) / "results.json").read_text())
    model = build_model(cfg, Pretrain())
    module = PromptTuningModule(model, cfg.task.num_classes, torch.optim.AdamW)
    model.attach(build_method(cfg))
    head = sum(p.numel() for p in model.vit.get_classifier().parameters())
    learnable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert results["status"] == "ok" and saved["method"] == method
    assert saved["parameters"]["learnable"] == learnable and saved["parameters"]["learnable_without_head"] == learnable - head
    assert saved["parameters"]["backbone"] == module.parameter_counts()["backbone"]
