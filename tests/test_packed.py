"""Packed grid points: K prompt-tuning runs in one forward, each equal to its own run."""

import functools

import pytest
import torch
from conftest import tiny_vit

from spt_lightning.models import PromptedViT
from spt_lightning.models.packed import PackedViT, packed_loss, replica_param_groups
from spt_lightning.module import PromptTuningModule

OPTIONS = [{"lr": 1e-3, "weight_decay": 1e-2}, {"lr": 2e-2, "weight_decay": 0.0},
           {"lr": 5e-2, "weight_decay": 1e-3, "head_weight_decay": 0.5}]


def _model(deep=True):
    torch.manual_seed(0)  # the same backbone, prompts and head for every replica, as a study's grid has them
    model = PromptedViT(tiny_vit(num_classes=4), 3, deep=deep)
    model.freeze_backbone()
    return model


def _unpacked_run(batches, opts, deep):
    """One grid point alone, optimised as the project's module does (its param groups, AdamW)."""
    model = _model(deep)
    head_wd = opts.get("head_weight_decay")
    module = PromptTuningModule(model, 4, functools.partial(torch.optim.AdamW, lr=opts["lr"],
                                                            weight_decay=opts["weight_decay"]),
                                param_groups={"head": {"weight_decay": head_wd}})
    optimizer = torch.optim.AdamW(module.param_groups())
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


@pytest.mark.parametrize("deep", [True, False])
def test_each_packed_point_equals_its_own_run_after_several_steps(deep):
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, 32, 32, generator=g), torch.randint(0, 4, (6,), generator=g)) for _ in range(5)]
    packed = PackedViT([_model(deep) for _ in OPTIONS])
    frozen = {n: p.detach().clone() for n, p in packed.vit.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW(replica_param_groups(packed, OPTIONS))
    for x, y in batches:
        logits = packed(x)
        assert logits.shape == (3, 6, 4)
        packed_loss(logits, y).backward()
        optimizer.step()
        optimizer.zero_grad()
    for k, opts in enumerate(OPTIONS):
        alone = _unpacked_run(batches, opts, deep)
        mine = packed.replica_parameters(k)
        for name, value in mine.items():
            torch.testing.assert_close(value, dict(alone.named_parameters())[name], rtol=1e-4, atol=1e-5)
    assert all(torch.equal(p, frozen[n]) for n, p in packed.vit.named_parameters() if not p.requires_grad)
    # the replicas really differ (other lrs), and the source models' own heads were left alone
    assert not torch.allclose(packed.replica_parameters(0)["vit.head.weight"], packed.replica_parameters(2)["vit.head.weight"])


def test_packing_leaves_the_source_models_untouched():
    models = [_model() for _ in range(2)]
    head = models[0].vit.head
    PackedViT(models)
    assert models[0].vit.head is head and isinstance(head, torch.nn.Linear)
