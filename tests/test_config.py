from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

import spt_lightning
from spt_lightning.build import build, build_model
from spt_lightning.config import check_config
from spt_lightning.errors import ConfigError

CONF = Path(spt_lightning.__file__).parent / "conf"


def _model(cfg):
    return build_model(cfg, build(cfg.pretrain, _convert_="all"))


def _train_refuses(tmp_path, overrides: list[str], error: type, match: str, fast: bool = True) -> None:
    """``train`` refuses the command line with ``error`` before it writes anything."""
    from conftest import compose_cfg
    from spt_lightning.train import train

    with pytest.raises(error, match=match):
        train(compose_cfg(tmp_path / "run", overrides, fast=fast))
    assert not (tmp_path / "run").exists()


def _options(group: str) -> list[str]:
    return sorted(str(p.relative_to(CONF / group).with_suffix("")) for p in (CONF / group).rglob("[!_]*.yaml"))


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in ("task", "backbone", "pretrain", "method", "prompt", "init", "model", "data", "trainer",
                      "callbacks", "logger", "paths", "debug", "experiment") for o in _options(g)],
)
def test_every_option_composes(cfg_factory, group, option):
    overrides = [f"{group}={option}"]
    if group == "pretrain" and option == "file":
        overrides.append("pretrain.file=/some/weights.pth")
    if group == "task" and option == "folder":
        overrides.append("task.data_dir=/some/folder")  # num_classes: counted from the folder at run time
    cfg = cfg_factory(*overrides)
    assert (cfg.task.num_classes is None or cfg.task.num_classes > 0) and cfg.backbone.arch and cfg.method.name
    check_config(cfg)


def test_defaults_are_the_offline_demo(tmp_path):
    from spt_lightning.config import compose_train

    cfg = compose_train([])
    assert cfg.task.name == "demo/animal_mnist" and cfg.task.sizes == {"train": 800, "val": 200, "test": 2000}
    assert cfg.backbone.arch == "vit_small_patch14_dinov2" and cfg.backbone.img_size == 112
    assert cfg.pretrain.source == "bundled"
    assert cfg.method.name == "spt_deep" and cfg.prompt.init == "kmeans" and cfg.prompt.deep


@pytest.mark.parametrize("init", ["kmeans", "random", "mean_pool", "max_pool", "scaled", "vipamin", "xavier"])
def test_prompt_init_reaches_the_callback(cfg_factory, init):
    from hydra.utils import instantiate

    cfg = cfg_factory(f"prompt.init={init}", "init.tokens_per_prompt=50", "init.data_fraction=0.5")
    callback = instantiate(cfg.callbacks.prototype_init)
    assert (callback.strategy.name, callback.tokens_per_prompt, callback.data_fraction) == (init, 50, 0.5)


def test_unknown_prompt_init_is_refused_by_the_callback_before_any_work(cfg_factory):
    from spt_lightning.build import build_callbacks
    from spt_lightning.prototypes import PrototypeError

    with pytest.raises(PrototypeError, match="prompt.init 'kmeens'; choose one of kmeans, random"):
        build_callbacks(cfg_factory("prompt.init=kmeens"))  # train builds the callbacks before the folder claim


def test_unknown_attention_kernel_is_refused(tmp_path):
    _train_refuses(tmp_path, ["attention=flash"], ConfigError, "attention=flash is unknown; choose auto, fused, eager")


@pytest.mark.parametrize("method,length,deep", [("vpt_deep", 3, True), ("vpt_shallow", 3, False), ("spt_deep", 3, True),
                                                ("spt_shallow", 3, False), ("linear", 0, True), ("full", 0, True),
                                                ("gated_prompts", 3, False), ("e2vpt", 3, True), ("bitfit", 0, True)])
def test_methods_build_the_right_model(cfg_factory, method, length, deep):
    # (prompt.length: null is "no prompts"; the prompted methods take the recipe's length)
    cfg = cfg_factory(f"method={method}", "recipe.prompt_length.deep=3", "recipe.prompt_length.shallow=3")
    model = _model(cfg)
    assert model.prompt_length == length
    if length:
        assert model.prompts.num_layers == (len(model.vit.blocks) if deep else 1)


def test_plain_prompt_keys_override_method(cfg_factory):
    cfg = cfg_factory("method=vpt_deep", "prompt.deep=false", "prompt.dropout=0.1", "prompt.length=2")
    model = _model(cfg)
    assert model.prompts.num_layers == 1 and model.prompts.dropout.p == 0.1


def test_unknown_option_lists_valid_choices(cfg_factory):
    with pytest.raises(ConfigCompositionException) as err:
        cfg_factory("method=vpt_deeep")
    assert "vpt_shallow" in str(err.value.__cause__ or err.value) or "Available options" in str(err.value)


@pytest.mark.parametrize("length", [0, -5])
def test_nonpositive_prompt_length_is_refused(tmp_path, cfg_factory, length):
    _train_refuses(tmp_path, ["method=vpt_deep", f"prompt.length={length}"], ConfigError, f"prompt.length={length}")
    assert _model(cfg_factory("method=vpt_deep", "prompt.length=null")).prompts is None  # null: no prompts


def test_negative_learning_rate_is_refused(tmp_path):
    _train_refuses(tmp_path, ["model.optimizer.lr=-0.1"], ConfigError, "model.optimizer.lr=-0.1")


@pytest.mark.parametrize("pretrain,arch,fmt", [("sup_in21k", "vit_base_patch16_224", "timm"),
                                                ("mae", "vit_base_patch16_224", "mae"),
                                                ("mocov3", "vit_base_patch16_224", "mocov3"),
                                                ("dinov2", "vit_base_patch14_dinov2", "timm")])
def test_pretrain_brings_its_backbone_and_format(tmp_path, pretrain, arch, fmt):
    from conftest import compose_cfg

    cfg = compose_cfg(tmp_path, [f"pretrain={pretrain}"], fast=False)  # no tiny debug backbone
    assert (cfg.backbone.arch, cfg.pretrain.format) == (arch, fmt)
    cfg = compose_cfg(tmp_path, [f"pretrain={pretrain}", "backbone=vit_large_patch16"], fast=False)
    assert cfg.backbone.arch == "vit_large_patch16_224"  # the command line wins


def test_mocov3_without_file_says_which_file(tmp_path):
    from spt_lightning.backbones import BackboneError

    _train_refuses(tmp_path, ["pretrain=mocov3", "backbone=vit_tiny_test"], BackboneError, "vit-b-300ep.pth.tar",
                   fast=False)


VTAB_GROUPS = {"natural": 7, "specialized": 4, "structured": 8}


def test_task_catalogue_has_24_benchmark_tasks_with_their_classes(cfg_factory):
    tasks = {o: cfg_factory(f"task={o}").task for o in _options("task") if o.startswith(("fgvc/", "vtab/"))}
    assert len(tasks) == 24
    assert sum(t.group == "fgvc" for t in tasks.values()) == 5
    for group, count in VTAB_GROUPS.items():
        assert sum(t.group == f"vtab_{group}" for t in tasks.values()) == count
    classes = {name: t.num_classes for name, t in tasks.items()}
    assert classes["fgvc/cub"] == 200 and classes["fgvc/nabirds"] == 555 and classes["fgvc/cars"] == 196
    assert classes["vtab/sun397"] == 397 and classes["vtab/smallnorb_ele"] == 9 and classes["vtab/retinopathy"] == 5


def test_data_dir_follows_paths_and_env(cfg_factory, monkeypatch):
    assert cfg_factory("task=vtab/dtd", "paths.data_dir=/d").task.data_dir == "/d/vtab-1k/dtd"
    monkeypatch.setenv("SPT_DATA_DIR", "/from/env")
    assert cfg_factory("task=fgvc/dogs").task.data_dir == "/from/env/Stanford-dogs"


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_ready_experiment_sweeps_valid_options_and_keys(experiment):
    """A mistyped task or key in a sweep definition is caught here, not 18 jobs into a sweep."""
    from spt_lightning.config import check_overrides, compose_train

    params = compose_train([f"experiment={experiment}"], hydra=True).hydra.sweeper.params
    assert params, f"experiment={experiment} sweeps nothing"
    check_overrides([f"experiment={experiment}", *(f"{key}={value}" for key, value in params.items())])


@pytest.mark.parametrize("pretrain", ["sup_in21k", "mae", "dino", "dinov2", "bundled", "random"])
def test_normalisation_is_the_weights_own_without_building_the_model(cfg_factory, pretrain):
    """Read from timm's registry so the data is checked before any download; equal to the built model's."""
    import timm

    backbone = {"dinov2": "vit_base_patch14_dinov2", "bundled": "vit_small_patch14_dinov2",
                "random": "vit_small_patch14_dinov2"}.get(pretrain, "vit_base_patch16")
    cfg = cfg_factory(f"pretrain={pretrain}", f"backbone={backbone}")
    tag = cfg.pretrain.get("tag")
    built = timm.create_model(f"{cfg.backbone.arch}.{tag}" if tag else cfg.backbone.arch, pretrained=False).pretrained_cfg
    expected = (list(cfg.pretrain.mean or built["mean"]), list(cfg.pretrain.std or built["std"]))
    assert build(cfg.pretrain).normalisation(cfg.backbone.arch) == expected


def test_renamed_keys_still_work_with_a_line_saying_so(caplog):
    from spt_lightning.config import compose_train, renamed

    old = ["optim.optimizer.lr=0.1", "init.strategy=random", "optim.warmup_epochs=2", "seed=1", "init.kmeans_iters=3"]
    new = renamed(old)
    assert new == ["model.optimizer.lr=0.1", "prompt.init=random", "model.scheduler.warmup_epochs=2", "seed=1",
                   "init.kmeans_iters=3"]
    assert sum("is deprecated" in r.message for r in caplog.records) == 3
    cfg = compose_train(new)
    assert (cfg.model.optimizer.lr, cfg.init.strategy, cfg.model.scheduler.warmup_epochs) == (0.1, "random", 2)


def test_negative_warmup_is_refused_before_anything_is_written(tmp_path):
    _train_refuses(tmp_path, ["model.scheduler.warmup_epochs=-1"], ConfigError, "model.scheduler.warmup_epochs=-1")
