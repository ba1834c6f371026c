import functools

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from spt_lightning.models import PromptedViT
from spt_lightning.module import PromptTuningModule
from spt_lightning.schedules import warmup_cosine

from conftest import tiny_vit


def _module(prompt_length=4, finetune=False, lr=1e-2, **vit_kwargs):
    torch.manual_seed(0)
    model = PromptedViT(tiny_vit(num_classes=4, **vit_kwargs), prompt_length, deep=True)
    opt = functools.partial(torch.optim.AdamW, lr=lr, weight_decay=0.05)
    return PromptTuningModule(model, 4, opt, param_groups={"head": {"weight_decay": 0.0}}, finetune_backbone=finetune)


def _loader(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    colours = torch.randn(4, 3, 1, 1, generator=g)
    x = colours[y] + 0.5 * torch.randn(n, 3, 32, 32, generator=g)  # a colour per class: learnable
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)


def _trainer(tmp_path, epochs):
    return L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )


def test_frozen_weights_bit_identical_and_loss_falls(tmp_path):
    module = _module()
    frozen = {n: p.detach().clone() for n, p in module.model.vit.named_parameters() if not n.startswith("head.")}
    prompts_before = module.model.prompts.embeddings.detach().clone()
    loader = _loader()
    x, y = next(iter(DataLoader(loader.dataset, batch_size=64)))
    with torch.no_grad():
        loss_before = torch.nn.functional.cross_entropy(module.eval()(x), y).item()
    _trainer(tmp_path, 8).fit(module, loader)
    for n, p in module.model.vit.named_parameters():
        if not n.startswith("head."):
            assert torch.equal(p, frozen[n]), n
    assert not torch.equal(module.model.prompts.embeddings, prompts_before)
    with torch.no_grad():
        loss_after = torch.nn.functional.cross_entropy(module.eval()(x), y).item()
    assert loss_after < 0.5 * loss_before


def test_full_finetuning_changes_the_backbone(tmp_path):
    module = _module(prompt_length=None, finetune=True, lr=1e-3)
    before = module.model.vit.blocks[0].attn.qkv.weight.detach().clone()
    _trainer(tmp_path, 1).fit(module, _loader(32))
    assert not torch.equal(module.model.vit.blocks[0].attn.qkv.weight, before)
    assert set(module.trainable_groups()) == {"head", "backbone"}


def test_param_groups_decay_and_counts(tmp_path):
    module = _module()
    trainer = _trainer(tmp_path, 1)
    trainer.fit(module, _loader(16))
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert set(groups) == {"prompts", "head", "head_no_decay"}
    assert groups["prompts"]["weight_decay"] == 0.05
    assert groups["head"]["weight_decay"] == 0.0 and groups["head_no_decay"]["weight_decay"] == 0.0
    counts = module.parameter_counts()
    assert counts["learnable"] == 3 * 4 * 64 + 64 * 4 + 4
    assert counts["learnable_without_head"] == 3 * 4 * 64


def test_linear_probe_trains_head_only():
    module = _module(prompt_length=None)
    assert set(module.trainable_groups()) == {"head"}


def test_schedule_warms_up_linearly_then_follows_a_half_cosine_to_zero():
    """Per step, every group alike: lr * (s + 1) / w during the w warm-up steps, then
    lr * (1 + cos(pi * (s - w) / (total - w))) / 2."""
    import math
    from types import SimpleNamespace

    module = _module(lr=1e-2)
    module.group_options["head"]["lr_scale"] = 0.5
    module.trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=10)  # warmup_epochs=1: 10 steps
    config = module.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append({g["name"]: g["lr"] for g in optimizer.param_groups})
        optimizer.step()
        schedule.step()
    for step, lr in enumerate(lrs):
        factor = (step + 1) / 10 if step < 10 else (1 + math.cos(math.pi * (step - 10) / 90)) / 2
        assert lr["prompts"] == pytest.approx(1e-2 * factor, abs=1e-12)
        assert lr["head"] == pytest.approx(0.5e-2 * factor, abs=1e-12)
    assert lrs[0]["prompts"] == pytest.approx(1e-3)
    assert lrs[9]["prompts"] == pytest.approx(1e-2) and lrs[10]["prompts"] == pytest.approx(1e-2)
    assert lrs[55]["prompts"] == pytest.approx(0.5e-2) and lrs[99]["prompts"] < 1e-5

    module.scheduler_factory = functools.partial(warmup_cosine, warmup_epochs=0)  # the cosine from the first step
    module.trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=10)
    config = module.configure_optimizers()
    for _ in range(5):
        config["optimizer"].step()
        config["lr_scheduler"]["scheduler"].step()
    assert config["optimizer"].param_groups[0]["lr"] == pytest.approx(1e-2 * (1 + math.cos(math.pi * 0.5)) / 2)


def test_bf16_mixed_on_cpu(tmp_path):
    module = _module()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", precision="bf16-mixed", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(module, _loader(32))
    assert module.model.prompts.embeddings.dtype == torch.float32
    assert torch.isfinite(module.model.prompts.embeddings).all()
    assert not any(b.attn.fused_attn for b in module.model.vit.blocks), "attention=auto is eager on a CPU"


def test_ema_is_validated_checkpointed_and_resumed(tmp_path):
    from lightning.pytorch.callbacks import Callback, ModelCheckpoint

    from spt_lightning.callbacks import TrainableEMA

    class Record(Callback):
        def __init__(self):
            self.raw = []

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.raw.append(pl_module.model.prompts.embeddings.detach().clone())

    module = _module()
    start = module.model.prompts.embeddings.detach().clone()
    record, decay = Record(), 0.8
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        callbacks=[TrainableEMA(decay), record, ckpt], default_root_dir=tmp_path)
    loader = _loader(32)
    trainer.fit(module, loader, loader)
    expected = start.clone()
    for raw in record.raw:
        expected += (1 - decay) * (raw - expected)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    torch.testing.assert_close(saved["state_dict"]["model.prompts.embeddings"], expected)
    (ema_state,) = [v for k, v in saved["callbacks"].items() if "TrainableEMA" in k]
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    torch.testing.assert_close(ema_state["raw"][names.index("model.prompts.embeddings")], record.raw[-1])  # to resume
    torch.testing.assert_close(module.model.prompts.embeddings, expected)  # once fit ends, the test sees the average

    resumed = _module()
    ema = TrainableEMA(decay)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        callbacks=[ema], default_root_dir=tmp_path)
    trainer.fit(resumed, loader, loader, ckpt_path=tmp_path / "last.ckpt")  # already done: restores only
    torch.testing.assert_close(resumed.model.prompts.embeddings, expected)
    torch.testing.assert_close(ema.average[ema._names.index("model.prompts.embeddings")], expected)

    # continuing for one more epoch goes on from the saved average and the raw values
    record2, ema2 = Record(), TrainableEMA(decay)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                        callbacks=[ema2, record2], default_root_dir=tmp_path, enable_checkpointing=False)
    continued = _module()
    trainer.fit(continued, loader, loader, ckpt_path=tmp_path / "last.ckpt")
    for raw in record2.raw:
        expected += (1 - decay) * (raw - expected)
    torch.testing.assert_close(ema2.average[ema2._names.index("model.prompts.embeddings")], expected)


@pytest.mark.slow
def test_compiled_model_trains_with_unchanged_names_and_outputs(tmp_path):
    module = _module()
    module.compile_model = True
    names = [n for n, _ in module.model.named_parameters()]
    _trainer(tmp_path, 1).fit(module, _loader(32))
    assert module.model._compiled_call_impl is not None
    assert [n for n, _ in module.model.named_parameters()] == names, "checkpoint keys must not change"
    x = _loader(16).dataset.tensors[0][:4]
    model = module.model.eval()
    with torch.no_grad():
        compiled = model(x)
        model._compiled_call_impl = None
        torch.testing.assert_close(compiled, model(x), rtol=1e-4, atol=1e-4)
