import pytest
import torch

from spt_lightning.models import PromptedViT, Prompts

from conftest import tiny_vit


def _capture_block_inputs(model: PromptedViT):
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach())) for b in model.vit.blocks]
    return seen, hooks


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("pool,reg", [("token", 0), ("avg", 0), ("token", 2)])
def test_shapes_and_token_layout(deep, pool, reg):
    torch.manual_seed(0)
    vit = tiny_vit(global_pool=pool, reg_tokens=reg, class_token=pool == "token" or reg == 0).eval()
    model = PromptedViT(vit, prompt_length=7, deep=deep).eval()
    x = torch.randn(3, 3, 32, 32)
    seen, hooks = _capture_block_inputs(model)
    logits = model(x)
    assert logits.shape == (3, 5)
    n = vit.num_prefix_tokens
    for i, tokens in enumerate(seen):
        assert tokens.shape == (3, n + 7 + 64, 64)
        layer = i if deep else 0
        if i == 0 or deep:  # fresh prompts sit right after the prefix tokens
            torch.testing.assert_close(tokens[:, n : n + 7], model.prompts.embeddings[layer].expand(3, -1, -1))
    assert model.forward_features(x).shape == (3, n + 64, 64), "prompts must be cut before norm/pool"
    for h in hooks:
        h.remove()


def test_deep_prompt_count_and_shallow_count():
    vit = tiny_vit()
    assert PromptedViT(vit, 4, deep=True).prompts.embeddings.shape == (3, 4, 64)
    assert PromptedViT(tiny_vit(), 4, deep=False).prompts.embeddings.shape == (1, 4, 64)


def test_no_prompts_is_exactly_timm():
    torch.manual_seed(0)
    vit = tiny_vit(global_pool="avg").eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(PromptedViT(vit).eval()(x), vit(x), rtol=0, atol=0)


def test_prompts_change_the_output_and_patch_tokens_keep_position():
    torch.manual_seed(0)
    vit = tiny_vit().eval()
    model = PromptedViT(vit, 5, deep=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out_a = model(x)
        model.prompts.embeddings.mul_(3)
        out_b = model(x)
    assert not torch.allclose(out_a, out_b)


def test_gradients_reach_only_prompts_and_head():
    model = PromptedViT(tiny_vit(), 5, deep=True)
    model.freeze_backbone()
    model.train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"prompts.embeddings", "vit.head.weight", "vit.head.bias"}
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in with_grad)


def test_frozen_backbone_stays_in_eval_mode():
    model = PromptedViT(tiny_vit(drop_rate=0.5), 5, dropout=0.5)
    model.freeze_backbone()
    model.train()
    assert model.training and model.prompts.training
    assert not any(m.training for m in model.vit.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # backbone deterministic in train mode: its dropout is off
        model.prompts.dropout.p = 0.0
        torch.testing.assert_close(model(x), model(x))


def test_drop_path_trains_only_where_the_backbone_was_built_with_it():
    """SSF's, FacT's and RepAdapter's authors train with drop-path in the frozen backbone (their recipes set
    backbone.drop_path_rate); SPT's README runs --drop_path 0.0, so its recipes build none."""
    model = PromptedViT(tiny_vit(drop_rate=0.5, drop_path_rate=0.5), 5)
    model.freeze_backbone()
    model.train()
    paths = [m for m in model.vit.modules() if type(m).__name__ == "DropPath"]
    assert paths and all(m.training for m in paths)
    assert not any(m.training for m in model.vit.modules() if type(m).__name__ != "DropPath")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x))
        model.eval()
        torch.testing.assert_close(model(x), model(x))


def test_prompt_length_must_be_positive():
    with pytest.raises(ValueError, match="prompt.length"):
        Prompts(1, 0, 64)


def test_xavier_init_bound_follows_vpt():
    p = Prompts(12, 50, 768, patch_fan_in=3 * 16 * 16)
    bound = (6.0 / (3 * 16 * 16 + 768)) ** 0.5
    assert p.embeddings.abs().max() <= bound
    assert p.embeddings.abs().max() > 0.95 * bound


def test_eager_and_fused_attention_agree_and_the_choice_reaches_every_block():
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(), prompt_length=3, deep=True)
    x = torch.randn(2, 3, 32, 32)
    model.set_attention("fused")
    assert model.attention == "fused"
    fused = model(x)
    model.set_attention("eager")
    assert [b.attn.fused_attn for b in model.vit.blocks] == [False] * len(model.vit.blocks)
    assert model.attention == "eager"
    torch.testing.assert_close(model(x), fused, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="attention=flash is unknown"):
        model.set_attention("flash")


def test_auto_attention_is_eager_on_cpu_and_fused_on_gpu():
    model = PromptedViT(tiny_vit(), prompt_length=3)
    model.set_attention("auto")  # where the model is: the CPU
    assert model.attention == "eager"
    model.set_attention("auto", torch.device("cuda", 0))  # where training will run (the module's setup)
    assert model.attention == "fused"
    model.set_attention("fused", torch.device("cpu"))
    assert model.attention == "fused"


# ---- what the head reads, against each lineage's own forward, line for line -----------------------------
def _authors_tokens(vit, prompts: torch.Tensor, x: torch.Tensor, deep: bool) -> torch.Tensor:
    """SPT's Models/MAE_vpt.py L19-36 (shallow) and MAE_vpt_deep.py L23-49 (deep); VPT's vit_prompt/vit_mae.py
    L94-116 is the same walk. ``prompts``: ``[layers, P, D]``."""
    B = x.shape[0]
    x = vit.patch_embed(x)
    cls_tokens = vit.cls_token.expand(B, -1, -1)
    x = torch.cat((cls_tokens, x), dim=1)
    x = x + vit.pos_embed
    num_prompts = prompts.shape[1]
    x = torch.cat((x[:, :1, :], prompts[0].unsqueeze(0).expand(B, -1, -1), x[:, 1:, :]), dim=1)
    for i, blk in enumerate(vit.blocks):
        if i > 0 and deep:
            x = torch.cat((x[:, :1, :], prompts[i].unsqueeze(0).expand(B, -1, -1), x[:, 1 + num_prompts:, :]), dim=1)
        x = blk(x)
    return x


def _authors_feature(name: str, vit, tokens: torch.Tensor, num_prompts: int) -> torch.Tensor:
    if name == "cls_token":  # SPT Models/vpt.py L35-36
        return vit.norm(tokens)[:, 0]
    if name == "patch_mean":  # VPT vit_prompt/vit_mae.py L126-128 ("img_pool"), MAE's fc_norm = its final norm
        return vit.fc_norm(tokens[:, num_prompts + 1:, :].mean(dim=1))
    if name == "prompt_patch_mean":  # SPT Models/MAE_vpt.py L38-40
        return vit.norm(tokens[:, 1:, :].mean(dim=1))
    fc_norm = torch.nn.LayerNorm(tokens.shape[-1], eps=1e-6)  # VPT vit_prompt/vit_mae.py L122-124: a fresh fc_norm
    return fc_norm(tokens[:, 1:, :].mean(dim=1))


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize("name", ["cls_token", "patch_mean", "prompt_patch_mean", "prompt_patch_mean_plain_norm"])
def test_each_head_feature_equals_its_authors_forward_exactly(name, deep):
    from spt_lightning.models.heads import HEAD_FEATURES

    torch.manual_seed(0)
    vit = tiny_vit(global_pool=HEAD_FEATURES[name].timm_pool).eval()
    with torch.no_grad():  # norms away from 1 and 0, so that the pretrained affine shows
        for p in vit.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model = PromptedViT(vit, prompt_length=6, deep=deep, head_feature=name).eval()
    with torch.no_grad():
        model.prompts.embeddings.normal_()
        x = torch.randn(2, 3, 32, 32)
        ours = model(x)
        tokens = _authors_tokens(vit, model.prompts.embeddings, x, deep)
        theirs = vit.head(_authors_feature(name, vit, tokens, 6))
    assert torch.equal(ours, theirs), (ours - theirs).abs().max()
    if HEAD_FEATURES[name].timm_pool == "token":  # the same model and prompts read otherwise: other logits
        others = [n for n, h in HEAD_FEATURES.items() if h.timm_pool == "token" and n != name]
        for other in others:
            model.head_feature = HEAD_FEATURES[other]
            with torch.no_grad():
                assert not torch.allclose(model(x), ours), other


def test_an_unknown_head_feature_names_the_choices():
    from spt_lightning.errors import ConfigError

    with pytest.raises(ConfigError, match="pretrain.head_feature='mean': expected one of cls_token, patch_mean"):
        PromptedViT(tiny_vit(), 4, head_feature="mean")
