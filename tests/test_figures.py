"""Each report figure shows what it claims: its points, error bars and pairings, from constructed runs."""

import json

import pandas as pd
import pytest

from spt_lightning.report import figures, plots
from spt_lightning.report import aggregate, load_runs
from spt_lightning.report.tables import varying


def _run(tmp_path, name, task="vtab/dtd", acc=0.5, seed=0, method="spt_deep", init="kmeans", length=10, lr=0.01,
         init_time=1.0, learnable=100):
    target = "spt_lightning.methods." + ("Method" if method[:4] in ("spt_", "vpt_") else method)  # its record
    config = {"method": {"_target_": target, "name": method},
              "prompt": {"init": init, "length": length, "deep": method.endswith("deep")}, "init": {"strategy": init},
              "model": {"optimizer": {"lr": lr}}, "seed": seed, "data": {"protocol": "final"}}
    run = {"status": "ok", "task": task, "group": "vtab_natural", "method": method, "pretrain": "mae",
           "backbone": "vit_base_patch16_224", "prompt_length": length, "prompt_init": init, "seed": seed,
           "test": {"acc1": acc}, "splits": {"standard": True}, "config": config, "timings": {"init": init_time},
           "parameters": {"learnable": learnable + 10, "learnable_without_head": learnable, "backbone": 10_000}}
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(run))
    return folder


def _settings(tmp_path):
    runs = load_runs([tmp_path])
    settings = aggregate(runs)
    return runs, settings, varying(settings)


def test_another_method_is_paired_with_spt_deep_of_the_same_recipe(tmp_path):
    from spt_lightning.report.stats import kmeans_reference, paired_vs_kmeans

    for seed, (spt, lora) in enumerate([(0.8, 0.7), (0.82, 0.71), (0.81, 0.75)]):
        _run(tmp_path, f"spt{seed}", acc=spt, seed=seed)
        _run(tmp_path, f"lora{seed}", acc=lora, seed=seed, method="lora", init="kmeans", length=0)
        _run(tmp_path, f"lora_lr{seed}", acc=lora, seed=seed, method="lora", init="kmeans", length=0, lr=0.1)
    _, settings, _ = _settings(tmp_path)
    by_method = {(k.method, k.value("model.optimizer.lr")): k for k in settings}
    spt, lora, other_lr = by_method["spt_deep", 0.01], by_method["lora", 0.01], by_method["lora", 0.1]
    assert kmeans_reference(settings, lora) is settings[spt]
    assert kmeans_reference(settings, other_lr) is None  # another recipe: no claim of a pairing
    assert paired_vs_kmeans(settings, lora).startswith("-9.00 (p ")  # (70-80, 71-82, 75-81)


def test_accuracy_vs_prompt_length_keeps_settings_apart_with_seed_error_bars(tmp_path):
    for length in (10, 50):
        for seed in (0, 1):
            for lr in (0.01, 0.1):  # two lrs: two settings, never one line
                acc = 0.5 + length / 1000 + lr + 0.02 * seed
                _run(tmp_path, f"{length}-{seed}-{lr}", acc=acc, seed=seed, length=length, lr=lr)
    _, settings, shown = _settings(tmp_path)
    table = figures.run_table(settings, shown)
    path, drawn = plots.accuracy_vs_prompt_length(table, tmp_path / "p.png")
    lines = drawn["vtab/dtd"]
    assert sorted(lines) == ["spt_deep / mae / lr=0.01", "spt_deep / mae / lr=0.1"]
    (p10, p50) = lines["spt_deep / mae / lr=0.1"]
    assert p10[0] == 10 and p10[1] == pytest.approx(100 * (0.5 + 0.01 + 0.1 + 0.01))  # mean of the two seeds
    assert p10[2] == pytest.approx(pd.Series([61.0, 63.0]).std()) and p10[3] == 2 and p50[0] == 50
    assert path.stat().st_size > 1000


def test_spt_gain_pairs_each_spt_setting_with_its_vpt_twin(tmp_path):
    for seed in (0, 1):
        _run(tmp_path, f"spt{seed}", acc=0.8 + 0.01 * seed, seed=seed)
        _run(tmp_path, f"vpt{seed}", acc=0.7, seed=seed, method="vpt_deep", init="xavier")
        _run(tmp_path, f"vpt-lr{seed}", acc=0.1, seed=seed, method="vpt_deep", init="xavier", lr=0.5)  # not a twin
    _, settings, shown = _settings(tmp_path)
    pairs = figures.spt_vpt_pairs(settings, shown)
    _, drawn = plots.gain_over_vpt(pairs, tmp_path / "g.png")
    assert list(drawn.values()) == [pytest.approx(100 * 0.805 - 70)]  # the lr=0.5 VPT run is another setting
    assert pairs["std"].iloc[0] == pytest.approx(pd.Series([10.0, 11.0]).std())


def test_against_published_puts_each_task_beside_its_number(tmp_path):
    from spt_lightning.report.pairing import published_for

    _run(tmp_path, "a", task="vtab/cifar100", acc=0.6, method="vpt_deep", init="xavier")
    for folder in tmp_path.iterdir():  # VPT's own published setting: sup. IN-21k
        run = json.loads((folder / "results.json").read_text()) | {"pretrain": "sup_in21k"}
        (folder / "results.json").write_text(json.dumps(run))
    _, settings, shown = _settings(tmp_path)
    rows = figures.published_rows(settings, shown, published_for)
    _, drawn = plots.against_published(rows, tmp_path / "b.png")
    assert list(drawn.values()) == [[("vtab/cifar100", pytest.approx(60.0), 78.8)]]


def test_tuning_grid_marks_the_choice_and_an_edge_optimum(tmp_path):
    summary = {"grid": [{"overrides": [f"model.optimizer.lr={lr}", f"model.optimizer.weight_decay={wd}"],
                         "val_acc1_last": 0.5 + lr + wd} for lr in (0.001, 0.01, 0.1) for wd in (0.0, 0.01)],
               "chosen": ["model.optimizer.lr=0.1", "model.optimizer.weight_decay=0.01"], "edge": ["lr at the edge"]}
    (tmp_path / "study" / "vtab_dtd").mkdir(parents=True)
    (tmp_path / "study" / "vtab_dtd" / "tune_final.json").write_text(json.dumps(summary))
    (path,) = figures.grid_figures([tmp_path / "study"], tmp_path / "out")
    assert path.name == "vtab_dtd.png"
    grid = pd.DataFrame([{"lr": 0.1, "other": "weight_decay=0.0", "val": 60.0}])
    _, drawn = plots.tuning_grid(grid, {"lr": 0.1, "val": 60.0}, ["edge"], "t", tmp_path / "t.png")
    assert drawn == {"lines": {"weight_decay=0.0": [(0.1, 60.0)]}, "chosen": (0.1, 60.0), "edge": True}


def test_accuracy_vs_parameters_and_init_cost_show_one_point_per_setting(tmp_path):
    for seed in (0, 1):
        _run(tmp_path, f"k{seed}", acc=0.9, seed=seed, init_time=5.0, learnable=100)
        _run(tmp_path, f"x{seed}", acc=0.8, seed=seed, init="xavier", init_time=0.0, learnable=100)
        _run(tmp_path, f"l{seed}", acc=0.7, seed=seed, method="linear", init="kmeans", length=0, learnable=0)
    _, settings, shown = _settings(tmp_path)
    _, params = plots.accuracy_vs_parameters(figures.parameter_points(settings, shown), tmp_path / "a.png")
    assert sorted(v[1] for v in params.values()) == pytest.approx([70.0, 80.0, 90.0])
    (inits,) = figures.init_points(settings, shown)  # linear has no prompt init: not among them
    _, drawn = plots.init_time_vs_accuracy(inits, tmp_path / "i.png")
    assert drawn == {"kmeans": (5.0, pytest.approx(90.0)), "xavier": (0.0, pytest.approx(80.0))}


def test_training_curves_average_seeds_per_epoch_and_read_the_lr(tmp_path):
    for seed in (0, 1):
        folder = _run(tmp_path, f"r{seed}", seed=seed)
        (folder / "csv").mkdir()
        rows = ["epoch,lr-AdamW/prompts,step,train/loss_epoch,train/loss_step,val/acc1"]
        for epoch in range(2):
            rows += [f",{0.1 * (epoch + 1)},{2 * epoch},,,", f"{epoch},,{2 * epoch},,1.0,",
                     f"{epoch},,{2 * epoch + 1},{1.0 - epoch + seed},,{0.5 + 0.1 * epoch}"]
        (folder / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    runs, settings, shown = _settings(tmp_path)
    from spt_lightning.report import setting_of

    curves = figures.curve_table(runs, setting_of, settings, shown)
    _, drawn = plots.training_curves(curves, "vtab/dtd", tmp_path / "c.png")
    (line,) = drawn.values()
    assert line["train/loss_epoch"] == [(1, 1.5), (2, 0.5)] and line["lr"] == [(1, 0.1), (2, 0.2)]
    assert line["val/acc1"] == [(1, pytest.approx(50.0)), (2, pytest.approx(60.0))]
