"""Packed grid points: K prompt-tuning runs in one forward, each equal to its own run."""

import csv
import functools
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import tiny_vit

from spt_lightning.models import PromptedViT
from spt_lightning.models.packed import PackedViT, replica_groups, replica_losses
from spt_lightning.module import PromptTuningModule
from spt_lightning.settings import differences

OPTIONS = [{"lr": 1e-3, "weight_decay": 1e-2}, {"lr": 2e-2, "weight_decay": 0.0},
           {"lr": 5e-2, "weight_decay": 1e-3, "head_weight_decay": 0.5}]


def _model(deep=True):
    torch.manual_seed(0)  # the same backbone, prompts and head for every replica, as a study's grid has them
    model = PromptedViT(tiny_vit(num_classes=4), 3, deep=deep)
    model.freeze_backbone()
    return model


def _module(model, opts):
    return PromptTuningModule(model, 4, functools.partial(torch.optim.AdamW, lr=opts["lr"],
                                                          weight_decay=opts["weight_decay"]),
                              param_groups={"head": {"weight_decay": opts.get("head_weight_decay")}})


def _unpacked_run(batches, opts, deep):
    """One grid point alone, optimised as the project's module does (its param groups, AdamW)."""
    model = _model(deep)
    optimizer = torch.optim.AdamW(_module(model, opts).param_groups())
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
    source = _model(deep)
    groups = [g for k, opts in enumerate(OPTIONS)
              for g in replica_groups(packed, k, _module(source, opts).param_groups(), source, f"@{k}")]
    assert {g["name"] for g in groups} >= {"prompts@0", "head@2", "head_no_decay@1"}
    optimizer = torch.optim.AdamW(groups)
    for x, y in batches:
        logits = packed(x)
        assert logits.shape == (3, 6, 4)
        replica_losses(logits, y).sum().backward()
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


def test_prototypes_go_into_every_replica():
    packed = PackedViT([_model() for _ in range(3)])
    values = torch.randn(3, 3, 64)  # deep: one set per block of the tiny ViT
    packed.prompts.assign(values)
    assert all(torch.equal(s.detach(), values) for s in packed.prompts.sets)


def test_a_replicas_loss_is_its_own_mean_cross_entropy():
    logits, y = torch.randn(2, 5, 4), torch.randint(0, 4, (5,))
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[k], y) for k in range(2)])
    torch.testing.assert_close(replica_losses(logits, y), expected)


# ---- packed grid points in a study (tune --pack K) ---------------------------------------------------
# (imported inside the tests: importing the study driver at collection would start Hydra's plugin scan)

FAST = ["task=demo/synthetic", "debug=fast", "trainer.max_epochs=3"]
GRID = "model.optimizer.lr=1e-3,5e-2,1e30"  # the last one diverges: that point fails, alone


def _study(root, *overrides, pack=1):
    from spt_lightning.tune import tune_final

    return tune_final([*FAST, GRID, *overrides], root=root, seeds=1, pack=pack)


def _grid_runs(summary):
    return {tuple(g["overrides"]): json.loads((Path(g["folder"]) / "results.json").read_text()) for g in summary["grid"]}


def _best_state(run):
    (path,) = (Path(run["output_dir"]) / "checkpoints").glob("epoch*.ckpt")
    return path.name, torch.load(path, weights_only=False)["state_dict"]


def test_each_packed_grid_point_ends_as_its_own_run(tmp_path, monkeypatch, capsys):
    """--pack 3 against --pack 1: the same choice, per point the same selection, checkpoint (fp32
    tolerance), metrics file and results.json (less timings and the pack's note); the diverged point fails
    alone with its own run's message."""
    monkeypatch.setenv("SPT_CACHE", str(tmp_path / "cache"))
    (alone,) = _study(tmp_path / "alone").values()
    capsys.readouterr()
    (packed,) = _study(tmp_path / "packed", pack=3).values()
    out = capsys.readouterr().out
    assert "grid: 3 run(s), 0 finished before and reused, 3 to run, 3 of them in 1 pack(s)" in out
    assert "val/acc1 per point " in out  # the pack's epoch lines show each point
    assert packed["chosen"] == alone["chosen"] and packed["chosen_val_acc1_last"] == alone["chosen_val_acc1_last"]
    assert len(list((tmp_path / "packed").rglob("pack.json"))) == 1
    runs = {"alone": _grid_runs(alone), "packed": _grid_runs(packed)}
    for point, mine in runs["packed"].items():
        theirs = runs["alone"][point]
        assert mine["status"] == theirs["status"], point
        if point == ("model.optimizer.lr=1e+30",):
            assert mine["status"] == "failed" and "training diverged" in mine["error"] and "1e+30" in mine["error"]
            continue
        assert mine["packed"]["points"] == 3 and "packed" not in theirs
        same = {k for k in mine if mine[k] == theirs.get(k)}
        assert set(mine) - same == {"config", "init", "timings", "output_dir", "packed"}, set(mine) - same
        assert mine["selection"] == theirs["selection"] and mine["parameters"] == theirs["parameters"]
        assert differences(mine["config"], theirs["config"]) == []  # the same settings: tune reuses either
        assert mine["config"]["callbacks"]["last_checkpoint"]["dirpath"] == f"{mine['output_dir']}/checkpoints"
        (name, state), (their_name, their_state) = _best_state(mine), _best_state(theirs)
        assert name == their_name and state.keys() == their_state.keys()
        for key in state:
            torch.testing.assert_close(state[key], their_state[key], rtol=1e-4, atol=1e-5)
        rows = [list(csv.DictReader((Path(r["output_dir"]) / "csv" / "metrics.csv").open())) for r in (mine, theirs)]
        assert [r.keys() for r in rows[0]] == [r.keys() for r in rows[1]]
        for a, b in zip(*rows):
            for key in a.keys() - {"init/time"}:
                assert (a[key] == b[key] == "") or float(a[key]) == pytest.approx(float(b[key]), rel=1e-5), key
    # the same command again reuses every finished point of the pack (the failed one runs again, alone)
    stamps = lambda: {p: p.stat().st_mtime_ns for p in (tmp_path / "packed").rglob("results.json")  # noqa: E731
                      if json.loads(p.read_text())["status"] == "ok"}
    before = stamps()
    _study(tmp_path / "packed", pack=3)
    assert len(before) == 3 and stamps() == before


class _CrashAt(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed in epoch 1")


def test_a_killed_pack_resumes_where_it_stopped(tmp_path, monkeypatch):
    import spt_lightning.build as build
    from spt_lightning.tune import TuneError

    monkeypatch.setenv("SPT_CACHE", str(tmp_path / "cache"))
    (whole,) = _study(tmp_path / "whole", pack=3).values()
    with pytest.MonkeyPatch.context() as patch:  # the kill is not a setting of the run
        patch.setattr(build, "build_callbacks", lambda c, made=build.build_callbacks: [*made(c), _CrashAt()])
        with pytest.raises(TuneError, match="every grid run failed"):
            _study(tmp_path / "killed", pack=3)
    (pack,) = (tmp_path / "killed").rglob("pack.json")
    last = pack.parent / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 0
    failed = [json.loads(p.read_text()) for p in (tmp_path / "killed").rglob("results.json")]
    assert len(failed) == 3 and all(r["status"] == "failed" and "killed in epoch 1" in r["error"] for r in failed)
    (resumed,) = _study(tmp_path / "killed", pack=3).values()
    assert resumed["grid"] == [{**g, "folder": g["folder"].replace("whole", "killed")} for g in whole["grid"]]
    for point, run in _grid_runs(resumed).items():
        if run["status"] == "ok":
            assert run["resumed_from"] == str(last)
            (_, state), (_, uninterrupted) = _best_state(run), _best_state(_grid_runs(whole)[point])
            assert all(torch.equal(state[k], uninterrupted[k]) for k in state)


def test_which_points_pack(tmp_path):
    from spt_lightning.packing import packs
    from spt_lightning.tune import plan

    def config(*overrides):  # a run's config as the study plans it
        return plan([*FAST, *overrides], tmp_path, "grid", "point").config

    lrs = [config(f"model.optimizer.lr={lr}") for lr in (1e-3, 2e-3, 3e-3)]
    other = config("prompt.length=5", "model.optimizer.lr=1e-3")
    lora, dropout = config("method=lora"), config("prompt.dropout=0.1")
    groups, reasons = packs([*lrs, other, lora, None, dropout, config("model.param_groups.head.weight_decay=0.5")], 2)
    assert groups == [[0, 1], [2, 7], [3], [4], [5], [6]]
    inside = ("adds tensors inside the frozen blocks; a pack shares one backbone forward and holds per-point "
              "prompts and heads only (prompt tuning packs)")
    assert set(reasons) == {f"method=lora {inside}",
                            "it continues an unfinished run of its own",
                            "prompt dropout would draw other masks in a pack than in the point's own run"}
    assert packs(lrs, 1) == ([[0], [1], [2]], {})
    # the per-point methods of today's tables (SSF, adapters, FacT) are refused with the same reason
    for method in ("ssf", "adaptformer", "adapter_plus", "fact_tt", "repadapter"):
        assert packs([config(f"method={method}"), config(f"method={method}", "model.optimizer.lr=2e-3")], 2) == (
            [[0], [1]], {f"method={method} {inside}": 2})


def test_pack_must_be_positive(capsys):
    from spt_lightning.tune import main

    with pytest.raises(SystemExit):
        main(["--pack", "0", *FAST])
    assert "--pack must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_packs_run_on_the_joblib_launcher(tmp_path):
    """Each pack is one job of the launcher (here two packs side by side in worker processes)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SPT_LOG_DIR": str(tmp_path / "logs"), "SPT_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-m", "spt_lightning.tune", "task=demo/synthetic,demo/synthetic8", "debug=fast",
                           "model.optimizer.lr=1e-3,5e-2", "--seeds", "1", "--pack", "2", "--out", str(tmp_path / "study"),
                           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "grid: 4 run(s), 0 finished before and reused, 4 to run, 4 of them in 2 pack(s)" in done.stdout
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr
    grid = [json.loads(p.read_text()) for p in (tmp_path / "study").rglob("grid/*/results.json")]
    assert len(grid) == 4 and all(r["status"] == "ok" and r["packed"]["points"] == 2 for r in grid)
    assert {Path(r["packed"]["folder"]).parent.parent.name for r in grid} == {"demo_synthetic", "demo_synthetic8"}
