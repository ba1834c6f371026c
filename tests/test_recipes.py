"""Benchmark tasks compose the published setting (recipe/*.yaml), demo tasks the demo's; overrides win."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import spt_lightning
from spt_lightning.config import ConfigError, check_config, compose_train

CONF = Path(spt_lightning.__file__).parent / "conf"
SPT = OmegaConf.load(CONF / "recipe" / "spt.yaml").recipe  # the cited values, read from the recipe file itself
TASKS = sorted(f"{g}/{p.stem}" for g in ("fgvc", "vtab") for p in (CONF / "task" / g).glob("[!_]*.yaml"))


def _compose(*overrides):
    return compose_train(list(overrides))


@pytest.mark.parametrize("pretrain", ["sup_in21k_augreg", "mae", "mocov3"])
@pytest.mark.parametrize("task", TASKS)
def test_benchmark_task_composes_spts_setting(task, pretrain):
    cfg = _compose(f"task={task}", f"pretrain={pretrain}", *(["pretrain.file=/w.pth"] if pretrain == "mocov3" else []))
    family = task.split("/")[0]
    assert cfg.recipe.name == f"spt_{family}"
    assert (cfg.backbone.arch, cfg.backbone.img_size, cfg.pretrain.name) == ("vit_base_patch16_224", 224, pretrain)
    assert (cfg.trainer.max_epochs, cfg.model.scheduler.warmup_epochs, cfg.data.batch_size) == (
        SPT.epochs, SPT.warmup_epochs, SPT.batch_size) == (100, 10, 32)
    assert cfg.model.optimizer.lr == SPT.by_pretrain.lr[pretrain] == {"mae": 5e-2}.get(pretrain, 1e-3)
    assert cfg.model.optimizer.weight_decay == 1e-2
    assert cfg.model.param_groups.head.weight_decay == SPT.by_pretrain.head_weight_decay[pretrain]
    assert cfg.prompt.length == 20 and cfg.prompt.deep
    # SPT's pipeline: its transforms, ImageNet mean/std for every pretrain, MAE's pooled head
    assert cfg.task.transform == SPT.transforms[family] == {"fgvc": "crop", "vtab": "center_crop"}[family]
    assert list(cfg.pretrain.mean) == [0.485, 0.456, 0.406] and list(cfg.pretrain.std) == [0.229, 0.224, 0.225]
    assert cfg.pretrain.head_feature == ("prompt_patch_mean" if pretrain == "mae" else "cls_token")
    lrs = SPT.by_pretrain.lr_grid.get(pretrain, SPT.by_pretrain.lr_grid.other)
    assert list(cfg.recipe.grid["model.optimizer.lr"]) == list(lrs) and cfg.model.optimizer.lr in lrs
    check_config(cfg)


def test_the_default_pretrain_is_spts_augreg_in21k_and_shallow_gets_100_prompts():
    cfg = _compose("task=fgvc/cub", "method=spt_shallow")
    assert (cfg.pretrain.name, cfg.pretrain.tag) == ("sup_in21k_augreg", "augreg_in21k")
    assert cfg.prompt.length == 100 and not cfg.prompt.deep
    assert _compose("task=fgvc/cub", "method=vpt_deep").prompt.length == 20
    vpt = _compose("task=fgvc/cub", "recipe=vpt")  # VPT's own pipeline: Google's original weights
    assert (vpt.pretrain.name, vpt.pretrain.tag, vpt.task.transform) == ("sup_in21k", "orig_in21k", "vpt")


@pytest.mark.parametrize("recipe", ["spt", "spt_vtab", "spt_fgvc", "vpt", "vipamin", "demo"])
@pytest.mark.parametrize("pretrain", ["sup_in21k", "sup_in21k_augreg", "mae", "mocov3", "dino", "random"])
def test_every_recipe_composes_with_every_pretrain(recipe, pretrain):
    """Each recipe's head feature and transforms follow its lineage for any pretrain (docs/fidelity.md)."""
    from spt_lightning.models.heads import HEAD_FEATURES

    cfg = _compose("task=vtab/dtd", f"recipe={recipe}", f"pretrain={pretrain}", "pretrain.file=/w.pth")
    assert cfg.pretrain.head_feature in HEAD_FEATURES
    lineage_mae = {"spt": "prompt_patch_mean", "spt_vtab": "prompt_patch_mean", "spt_fgvc": "prompt_patch_mean",
                   "vpt": "prompt_patch_mean_plain_norm", "vipamin": "prompt_patch_mean_plain_norm", "demo": "cls_token"}
    assert cfg.pretrain.head_feature == (lineage_mae[recipe] if pretrain == "mae" else "cls_token")
    assert cfg.task.transform == {"spt": "center_crop", "spt_vtab": "center_crop", "spt_fgvc": "center_crop"}.get(
        recipe, "resize")
    check_config(cfg)


@pytest.mark.parametrize("task", ["demo/animal_mnist", "demo/synthetic", "demo/synthetic8"])
def test_demo_tasks_keep_the_offline_demo(task):
    cfg = _compose(f"task={task}")
    assert cfg.recipe.name == "demo" and cfg.pretrain.source == "bundled"
    assert (cfg.backbone.img_size, cfg.trainer.max_epochs, cfg.prompt.length, cfg.model.optimizer.lr) == (112, 10, 10, 5e-3)


def test_command_line_overrides_win_over_the_recipe():
    cfg = _compose("task=fgvc/cub", "prompt.length=50", "trainer.max_epochs=3", "model.optimizer.lr=0.2",
                   "pretrain=dino", "data.batch_size=8")
    assert (cfg.prompt.length, cfg.trainer.max_epochs, cfg.model.optimizer.lr, cfg.data.batch_size) == (50, 3, 0.2, 8)
    assert cfg.pretrain.name == "dino" and cfg.model.param_groups.head.weight_decay == 3.0  # `other`
    assert _compose("task=fgvc/cub", "recipe=demo").backbone.arch == "vit_small_patch14_dinov2"


@pytest.mark.parametrize("override, key", [("recipe.by_pretrain.lr.sup_in21k_augreg=abc", "model.optimizer.lr"),
                                           ("recipe.weight_decay=-1", "model.optimizer.weight_decay"),
                                           ("recipe.epochs=0", "trainer.max_epochs")])
def test_a_bad_recipe_value_names_the_key_and_the_recipe(tmp_path, override, key):
    """Refused by the constructor that takes the value, before any file is written or weights fetched."""
    from conftest import compose_cfg
    from spt_lightning.train import train

    with pytest.raises(ConfigError, match=rf"{key}=.*recipe=spt_fgvc"):
        train(compose_cfg(tmp_path / "run", ["task=fgvc/cub", override], fast=False))
    assert not (tmp_path / "run").exists()
