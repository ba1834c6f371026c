"""Sweeps, failure handling, W&B offline, report aggregates, the tune -> final recipe."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from spt_lightning.report.records import GROUP_TITLES, Entry, Setting, aggregate, catalogue, load_runs
from spt_lightning.report import main as report_main

from test_cli import FAST, _results, run_cli


FGVC = catalogue()["fgvc"]
VTAB = {GROUP_TITLES[g].removeprefix("VTAB "): ts for g, ts in catalogue().items() if g.startswith("vtab_")}


def test_multirun_grid_and_report_aggregates(tmp_path):
    done = run_cli(["-m", "debug=fast", "task=demo/synthetic,demo/synthetic8", "method=vpt_deep,vpt_shallow",
                    "prompt.length=3"], tmp_path)
    runs = _results(tmp_path)
    assert sorted((r["task"], r["method"], r["status"]) for r in runs) == [
        (t, m, "ok") for t in ("demo/synthetic", "demo/synthetic8") for m in ("vpt_deep", "vpt_shallow")]
    assert "epoch 2/2" in done.stdout  # plain per-epoch lines when not interactive
    out = tmp_path / "report"
    assert report_main([str(tmp_path / "logs"), "--out", str(out)]) == 0
    rows = list(__import__("csv").DictReader((out / "report.csv").open()))
    for r in runs:
        row = next(x for x in rows if x["task"] == r["task"] and x["method"] == r["method"])
        assert float(row["mean"]) == pytest.approx(100 * r["test"]["acc1"], abs=1e-3)
    table = (out / "report.md").read_text()  # one row per method, the tasks as columns
    assert "demo/synthetic8" in table and table.count("| vpt_deep |") == table.count("| vpt_shallow |") == 1
    assert not (out / "accuracy_vs_prompt_length.png").exists()  # one prompt length: no line to draw
    assert (out / "accuracy_vs_parameters.png").stat().st_size > 1000
    assert {p.name for p in (out / "curves").iterdir()} == {"demo_synthetic.png", "demo_synthetic8.png"}


def test_failed_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    done = run_cli(["-m", *FAST, "prompt.length=0,2"], tmp_path, check=False)
    assert done.returncode != 0 and "prompt.length=0" in done.stderr  # non-zero at the end, after the rest ran
    runs = {r["prompt_length"]: r for r in _results(tmp_path)}
    assert runs[0]["status"] == "failed" and "prompt.length=0" in runs[0]["error"]
    assert runs[2]["status"] == "ok" and "acc1" in runs[2]["test"]
    assert report_main([str(tmp_path / "logs"), "--out", str(tmp_path / "r")]) == 0
    assert "1 failed run(s)" in (tmp_path / "r" / "report.md").read_text()


def test_wandb_offline_run_folder_has_config_and_summary(tmp_path):
    done = run_cli([*FAST, "logger=[csv,wandb]", "callbacks=[default,prompt_analysis]"], tmp_path)  # lists of options
    (results,) = _results(tmp_path)
    assert results["wandb"] == "offline" and "W&B : offline" in done.stdout
    assert (Path(results["output_dir"]) / "csv" / "metrics.csv").is_file()
    (run_file,) = Path(results["output_dir"]).glob("wandb/offline-run-*/run-*.wandb")
    data = run_file.read_bytes()  # W&B's record log: keys are stored as plain strings
    for key in (b"test/acc1", b"params/learnable", b"init/time", b"selected_epoch", b"val/acc1", b"train/loss",
                b"demo/synthetic", b"spt_deep", b"tokens_per_prompt",
                b"lr-AdamW/prompts",  # LearningRateMonitor, every step
                b"analysis/dependence/layer0",  # the prompt analysis, a curve per layer (report draws the heatmap)
                b"val/*",  # define_metric: per-epoch charts against epoch
                f"results-{run_file.stem.split('-', 1)[1]}".encode()):  # results.json as an artifact
        assert key in data, key
    media = run_file.parent / "files" / "media"
    (table,) = (media / "table").glob("results_*.table.json")  # the run's row as a table
    row = dict(zip(*(lambda t: (t["columns"], t["data"][0]))(json.loads(table.read_text()))))
    assert row["task"] == "demo/synthetic" and row["test_acc1"] == results["test"]["acc1"]


def test_wandb_summary_holds_the_selected_epochs_val_accuracy(tmp_path, monkeypatch):
    """Not the last epoch's value W&B kept from the history: the epoch the run selected."""
    from spt_lightning.loggers import WandbRun, finish, summarise

    logger = WandbRun(save_dir=str(tmp_path), offline=True, project="t")
    logger.experiment.log({"val/acc1": 0.80, "epoch": 4})  # the last epoch
    results = {"task": "demo/synthetic", "method": "spt_deep", "pretrain": "random", "prompt_length": 2, "seed": 0,
               "selection": {"epoch": 2, "epochs": 5, "val_acc1": 0.95, "last_val_acc1": 0.80},
               "test": {"acc1": 0.91}, "parameters": {"learnable": 10}, "timings": {"init": 1.0}}
    summarise([logger], results)
    assert logger.experiment.summary["val/acc1"] == 0.95 and logger.experiment.summary["selected_epoch"] == 2
    finish([logger], failed=False)


def test_wandb_online_is_wandbs_own_login_state(tmp_path):
    """wandb's own check, each state in a fresh process (wandb keeps its session state per process)."""
    def logged_in(**env):
        base = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        code = "from spt_lightning.loggers import wandb_logged_in; print(wandb_logged_in())"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**base, "HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "cfg"), **env})
        return done.stdout.strip().splitlines()[-1]

    assert logged_in() == "False"  # no key, no netrc, no wandb settings
    assert logged_in(WANDB_API_KEY="a" * 40) == "True"
    (tmp_path / ".netrc").write_text(f"machine wandb.lab.example\n  login user\n  password {'b' * 40}\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert logged_in(WANDB_BASE_URL="https://wandb.lab.example") == "True"  # a self-hosted server's key
    assert logged_in() == "False"  # that key is not api.wandb.ai's


def test_the_wandb_login_check_asks_no_server(tmp_path):
    """wandb's "logged in as <user>" line looks the user up on the server: the check stays silent."""
    code = ("from wandb.sdk import wandb_setup\n"
            "def asked(*args, **kwargs): raise SystemExit('asked the server for the user name')\n"
            "wandb_setup._WandbSetup._get_username = asked\n"
            "from spt_lightning.loggers import wandb_logged_in\n"
            "print(wandb_logged_in(), wandb_setup.singleton().settings.silent)")
    base = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**base, "HOME": str(tmp_path), "WANDB_API_KEY": "a" * 40})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]  # logged in; wandb's own setting restored


def _fake(task, acc, seed, method="spt_deep", length=10):
    group = "fgvc" if task in FGVC else next(f"vtab_{g.lower()}" for g, ts in VTAB.items() if task in ts)
    return {"status": "ok", "task": task, "group": group, "method": method, "pretrain": "mae",
            "backbone": "vit_base_patch16_224",
            "prompt_length": length, "seed": seed, "test": {"acc1": acc}, "splits": {"standard": True, "how": "test"},
            "parameters": {"learnable": 10, "learnable_without_head": 5, "backbone": 1000}}


def test_group_means_and_both_overall_conventions(tmp_path):
    tasks = FGVC + [t for group in VTAB.values() for t in group]
    for i, task in enumerate(tasks):
        for seed, offset in ((0, -0.01), (1, 0.01)):
            folder = tmp_path / f"{i}-{seed}"
            folder.mkdir()
            (folder / "results.json").write_text(json.dumps(_fake(task, 0.5 + 0.01 * i + offset, seed)))
    (entry,) = aggregate(load_runs([tmp_path])).values()
    acc = {t: 100 * (0.5 + 0.01 * i) for i, t in enumerate(tasks)}
    assert entry.per_task["fgvc/cub"] == pytest.approx(acc["fgvc/cub"])
    assert statistics.stdev(entry.tasks["fgvc/cub"]) == pytest.approx(statistics.stdev([49.0, 51.0]))
    assert entry.groups["FGVC"] == pytest.approx(statistics.mean(acc[t] for t in FGVC))
    groups = {g: statistics.mean(acc[t] for t in ts) for g, ts in VTAB.items()}
    for g, value in groups.items():
        assert entry.groups[f"VTAB {g}"] == pytest.approx(value)
    vtab = [t for ts in VTAB.values() for t in ts]
    assert entry.groups["VTAB mean of 19 tasks"] == pytest.approx(statistics.mean(acc[t] for t in vtab))
    assert entry.groups["VTAB mean of 3 groups"] == pytest.approx(statistics.mean(groups.values()))
    assert entry.groups["VTAB mean of 19 tasks"] != pytest.approx(entry.groups["VTAB mean of 3 groups"])


def _study(tmp_path, *overrides, seeds=1):
    from spt_lightning.tune import tune_final

    return tune_final([*FAST, *overrides], root=tmp_path / "study", seeds=seeds)


def _stamps(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("results.json")}


def test_tune_chooses_at_the_last_epoch_runs_finals_and_reports_them(tmp_path, monkeypatch):
    from spt_lightning.tune import grid

    assert grid(["task=x", "model.optimizer.lr=1,2", "seed=0,1"])[1] == [
        ["model.optimizer.lr=1", "seed=0"], ["model.optimizer.lr=1", "seed=1"],
        ["model.optimizer.lr=2", "seed=0"], ["model.optimizer.lr=2", "seed=1"]]
    monkeypatch.setenv("SPT_CACHE", str(tmp_path / "cache"))
    (summary,) = _study(tmp_path, "model.optimizer.lr=1e-6,5e-2", seeds=2).values()
    grid_runs = {tuple(g["overrides"]): json.loads((Path(g["folder"]) / "results.json").read_text()) for g in summary["grid"]}
    scores = {k: r["selection"]["last_val_acc1"] for k, r in grid_runs.items()}
    assert summary["chosen_val_acc1_last"] == max(scores.values()) and scores[tuple(summary["chosen"])] == max(scores.values())
    assert all(r["protocol"] == "tune" and r["test"] == {} for r in grid_runs.values())  # never tested on test
    finals = [json.loads((Path(d) / "results.json").read_text()) for d in summary["final_dirs"]]
    assert [f["seed"] for f in finals] == [0, 1] and all(f["selection"]["epoch"] == 2 for f in finals)  # last epoch
    assert all(f["config"]["model"]["optimizer"]["lr"] == float(summary["chosen"][0].split("=")[1]) for f in finals)
    assert all(f["config"]["tuned"] == ["model.optimizer.lr"] for f in finals)
    assert [f["test"]["acc1"] for f in finals] == summary["final_test_acc1"]
    # the report of the study: the final runs only, their seeds averaged into one row
    assert report_main([str(tmp_path / "study"), "--out", str(tmp_path / "report")]) == 0
    rows = [line for line in (tmp_path / "report" / "report.md").read_text().splitlines() if "| spt_deep |" in line]
    mean = statistics.mean(100 * t for t in summary["final_test_acc1"])
    assert len(rows) == 1 and f"{mean:.2f} ± " in rows[0]
    assert "Beside the published" not in (tmp_path / "report" / "report.md").read_text()  # a tiny ViT: none published
    # the same command again: every finished run is read back, none trained again
    stamps = _stamps(tmp_path / "study")
    (again,) = _study(tmp_path, "model.optimizer.lr=1e-6,5e-2", seeds=2).values()
    assert again["final_test_acc1"] == summary["final_test_acc1"] and _stamps(tmp_path / "study") == stamps
    # the exported choices read back: the same final runs (same folders, so reused), no grid run
    rows = list(__import__("csv").DictReader((tmp_path / "study" / "hyperparameters.csv").open()))
    assert rows == [{"task": "demo/synthetic", "model.optimizer.lr": summary["chosen"][0].split("=")[1],
                     "val_acc1_last": str(summary["chosen_val_acc1_last"])}]
    from spt_lightning.tune import tune_final

    (final_only,) = tune_final([*FAST], root=tmp_path / "study", seeds=2,
                               chosen=tmp_path / "study" / "hyperparameters.csv").values()
    assert final_only["final_dirs"] == summary["final_dirs"] and final_only["grid"] == []
    assert final_only["final_test_acc1"] == summary["final_test_acc1"] and _stamps(tmp_path / "study") == stamps


@pytest.mark.slow
def test_a_study_reuses_a_run_only_for_its_own_settings(tmp_path, monkeypatch):
    """The issue's sequence: a second grid trains its own points and reports its own numbers; a changed
    setting far inside a long command line is another run; a folder of other settings is refused."""
    from spt_lightning.settings import digest
    from spt_lightning.tune import TuneError

    monkeypatch.setenv("SPT_CACHE", str(tmp_path / "cache"))
    (first,) = _study(tmp_path, "model.optimizer.lr=0.02,0.001").values()
    stamps = _stamps(tmp_path / "study")
    (second,) = _study(tmp_path, "model.optimizer.lr=1e-6,5e-6").values()
    assert second["chosen"][0] in ("model.optimizer.lr=1e-06", "model.optimizer.lr=5e-06")
    trained = {Path(g["folder"]) for g in second["grid"]} | {Path(d) for d in second["final_dirs"]}
    assert not trained & {p.parent for p in stamps}  # nothing of the first study was read as the second's
    for g in second["grid"]:
        run = json.loads((Path(g["folder"]) / "results.json").read_text())
        assert run["config"]["model"]["optimizer"]["lr"] == float(g["overrides"][0].split("=")[1])
    assert _stamps(tmp_path / "study").items() >= stamps.items()  # the first study's runs are kept as they were
    long = ["recipe.grid={model.optimizer.lr: [0.02]}", *(f"prompt.dropout=0.0{i}" for i in range(1, 10))]
    (a,) = _study(tmp_path, *long, "init.kmeans_iters=20").values()
    (b,) = _study(tmp_path, *long, "init.kmeans_iters=19").values()
    assert a["final_dirs"] != b["final_dirs"] and a["grid"][0]["folder"] != b["grid"][0]["folder"]
    # a finished run of other settings in a run's folder: refused, nothing run
    folder = Path(a["grid"][0]["folder"])
    stored = json.loads((folder / "results.json").read_text())
    stored["config"]["model"]["optimizer"]["lr"] = 0.5
    (folder / "results.json").write_text(json.dumps(stored))
    before = _stamps(tmp_path / "study")
    with pytest.raises(TuneError, match=r"other settings \(model.optimizer.lr: 0.5 -> 0.02\)"):
        _study(tmp_path, *long, "init.kmeans_iters=20")
    assert _stamps(tmp_path / "study") == before and digest(stored["config"]) not in str(folder)


@pytest.mark.slow
def test_study_on_the_joblib_launcher_and_resumed_on_the_basic_one(tmp_path):
    """Two tasks' grids as one batch of 2 side-by-side jobs; a deleted run is all that a rerun trains."""
    env = {"SPT_LOG_DIR": str(tmp_path / "logs"), "SPT_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    args = [*FAST, "task=demo/synthetic,demo/synthetic8", "model.optimizer.lr=0.02,0.001", "data.num_workers=1",
            "--seeds", "1",
            "--out", str(tmp_path / "study")]
    run = lambda *extra: subprocess.run([sys.executable, "-m", "spt_lightning.tune", *args, *extra],  # noqa: E731
                                        capture_output=True, text=True, env={**os.environ, **env}, timeout=600)
    done = run("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Joblib.Parallel(n_jobs=2" in done.stdout + done.stderr and "| mean of 2 tasks |" in done.stdout
    results = sorted((tmp_path / "study").rglob("results.json"))
    assert len(results) == 6 and all(json.loads(p.read_text())["status"] == "ok" for p in results)
    stamps = _stamps(tmp_path / "study")
    victim = next(p for p in results if "/final/" in str(p)).parent
    __import__("shutil").rmtree(victim)
    done = run()  # the basic launcher (the default)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "grid: 4 run(s), 4 finished before and reused, 0 to run" in done.stdout
    assert "final: 2 run(s), 1 finished before and reused, 1 to run" in done.stdout
    after = _stamps(tmp_path / "study")
    assert {p for p in after if after[p] != stamps.get(p)} == {victim / "results.json"}


@pytest.mark.slow
def test_study_on_submitits_local_launcher_requeued_jobs_resume_bit_identical(tmp_path):
    """submitit, as on SLURM but on this machine (hydra/launcher=submitit_local): grid points and final runs as
    separate submitit jobs in the study's folder, the table printed, a second invocation reusing every run. In a
    second study each job gets submitit's preemption signal (SIGUSR2) after its second epoch: submitit
    checkpoints the job and requeues it, the requeued job continues from its last.ckpt (resume=auto) and ends
    bit-identical to the uninterrupted study's."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import torch

    tests = Path(__file__).parent
    env = {**os.environ, "SPT_LOG_DIR": str(tmp_path / "logs"), "SPT_CACHE": str(tmp_path / "cache"),
           "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    args = [*FAST, "model.optimizer.lr=0.02,0.001", "--seeds", "1", "trainer.max_epochs=4",
            "+callbacks.requeue={_target_: submitit_helper.RequeueOnce}", "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10"]

    def tune(study: str, **extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "spt_lightning.tune", *args, "--out", str(tmp_path / study)],
                              capture_output=True, text=True, env={**env, **extra}, timeout=900)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        return done

    done = tune("whole")
    assert "| demo/synthetic |" in done.stdout and list((tmp_path / "whole" / ".submitit").iterdir())
    whole = sorted((tmp_path / "whole").rglob("results.json"))
    assert len(whole) == 3 and all(json.loads(p.read_text())["status"] == "ok" for p in whole)
    again = tune("whole")
    assert "grid: 2 run(s), 2 finished before and reused, 0 to run" in again.stdout
    assert "final: 1 run(s), 1 finished before and reused, 0 to run" in again.stdout

    tune("requeued", SPT_TEST_REQUEUE_EPOCH="1", SPT_TEST_REQUEUE_FLAG=str(tmp_path / "flags"))
    assert len(list((tmp_path / "flags").glob("*.requeued"))) == 3  # every job was signalled once
    for path in whole:
        run = path.parent.relative_to(tmp_path / "whole")
        ours = json.loads((tmp_path / "requeued" / run / "results.json").read_text())
        assert ours["status"] == "ok" and ours["resumed_from"].endswith("last.ckpt"), run
        assert ours["selection"] == json.loads(path.read_text())["selection"], run
        a, b = (torch.load(root / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
                for root in (tmp_path / "whole", tmp_path / "requeued"))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run


def test_a_dry_run_lists_the_jobs_their_resources_and_gpu_hours_and_starts_none(tmp_path, capsys):
    from spt_lightning.tune import main as tune

    out = tmp_path / "study"
    args = ["experiment=paper/vtab", "pretrain=mae", "method=spt_deep", "--out", str(out), "--dry-run",
            "hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_node=1", "hydra.launcher.timeout_min=600"]
    assert tune(args) == 0
    printed = capsys.readouterr().out
    assert "dry run: 171 job(s)" in printed and "gpus_per_node=1" in printed and "timeout_min=600" in printed
    assert "| vtab/dsprites_loc | 6 | 3 | 800 / 200 / 73728 | 100 | unknown |" in printed
    assert "max_num_timeout=0: a job that runs out of time is not requeued" in printed and not out.exists()
    check = tmp_path / "gpu_check.json"
    check.write_text(json.dumps({"environment": {"gpu": "NVIDIA H100"}, "step": {"fused": {"images_per_s": 500.0}}}))
    assert tune(["task=vtab/dtd", "method=spt_deep", "--dry-run", "--gpu-check", str(check), "--seeds", "2"]) == 0
    printed = capsys.readouterr().out
    # 6 grid points of 100 epochs x (800 + 200/3) images, 2 finals of 100 x 1000 + 1880/3, at 500 images/s
    expected = (6 * 100 * (800 + 200 / 3) + 2 * (100 * 1000 + 1880 / 3)) / 500 / 3600
    assert f"| vtab/dtd | 6 | 2 | 800 / 200 / 1880 | 100 | {expected:.2f} |" in printed
    assert "NVIDIA H100 (500 images/s)" in printed and not list(tmp_path.glob("logs"))


def test_a_cluster_option_the_plugin_does_not_know_is_one_line(tmp_path, capsys):
    from spt_lightning.tune import main as tune

    assert tune(["task=demo/synthetic", "hydra/launcher=submitit_local", "hydra.launcher.gpu_per_node=1",
                 "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no option 'gpu_per_node'. Did you mean gpus_per_node" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "study").exists()


def test_a_launcher_without_its_plugin_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    from spt_lightning.config import ConfigError, check_overrides
    from spt_lightning.tune import tune_final

    with pytest.raises(ConfigError, match=r"hydra/launcher=ray: the launcher plugin is not installed"):
        tune_final([*FAST, "hydra/launcher=ray"], root=tmp_path / "study")
    assert not (tmp_path / "study").exists()
    monkeypatch.setitem(__import__("spt_lightning.config").config.LAUNCHER_EXTRAS, "ray", "ray")
    with pytest.raises(ConfigError, match=r"pip install 'spt-lightning\[ray\]'"):
        check_overrides(["-m", "hydra/launcher=ray"][1:])


def test_tune_takes_the_recipes_grid_and_tunes_each_task(tmp_path, monkeypatch, capsys):
    from spt_lightning.tune import tune_final

    monkeypatch.setenv("SPT_CACHE", str(tmp_path / "cache"))
    fast = ["debug=fast", "recipe.grid={model.optimizer.lr: [5e-2]}"]
    summaries = tune_final([*fast, "task=demo/synthetic,demo/synthetic8"], root=tmp_path / "tf", seeds=1)
    assert list(summaries) == ["demo/synthetic", "demo/synthetic8"]
    for task, s in summaries.items():
        assert [g["overrides"] for g in s["grid"]] == [["model.optimizer.lr=0.05"]]
        final = json.loads((Path(s["final_dirs"][0]) / "results.json").read_text())
        assert final["task"] == task and final["protocol"] == "final"
        assert (tmp_path / "tf" / task.replace("/", "_") / "tune_final.json").is_file()
    assert "| mean of 2 tasks |" in capsys.readouterr().out


def test_vipamin_recipe_is_its_authors_joint_grid_and_needs_its_init(tmp_path):
    from spt_lightning.config import compose_train as _compose
    from spt_lightning.tune import TuneError, _recipe_points, read_choices, tune_final

    cfg = _compose(["task=vtab/dtd", "pretrain=mae", "method=spt_shallow", "prompt.init=vipamin", "recipe=vipamin"])
    points = _recipe_points(cfg)
    assert len(points) == 7 * 9 and cfg.prompt.length == 100 and cfg.recipe.batch_size == 32
    pairs = {(p[1], p[2]) for p in points}
    assert pairs == {(f"init.vipamin_k={k}", f"init.vipamin_lambda={lam}") for k in (2, 8, 32, 128) for lam in (0.0, 0.5)} | {
        ("init.vipamin_k=2", "init.vipamin_lambda=1.0")}
    lrs = sorted({float(p[0].split("=")[1]) for p in points})
    assert lrs == pytest.approx([base * 32 / 256 for base in (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)])
    with pytest.raises(TuneError, match="varies init.vipamin_k, init.vipamin_lambda, which prompt.init=kmeans does not"):
        tune_final(["task=vtab/dtd", "method=spt_shallow", "recipe=vipamin"], root=tmp_path / "s")
    (tmp_path / "c.csv").write_text("task,model.optimizer.lr\ndemo/synthetic8,0.01\n")
    with pytest.raises(TuneError, match="has no row for demo/synthetic; nothing was run"):
        tune_final(["task=demo/synthetic"], root=tmp_path / "s", chosen=tmp_path / "c.csv")
    assert read_choices(tmp_path / "c.csv")["demo/synthetic8"]["chosen"] == ["model.optimizer.lr=0.01"]
    assert not (tmp_path / "s").exists()


def test_choice_reports_ties_and_an_optimum_on_the_grids_edge():
    from spt_lightning.tune import Job, choose

    points = [[f"model.optimizer.lr={lr}"] for lr in (1e-3, 5e-3, 2e-2)]
    jobs = [Job(p, {}, Path(f"/g{i}"), f"g{i}", {"status": "ok", "selection": {"last_val_acc1": last, "val_acc1": best}})
            for i, (p, last, best) in enumerate(zip(points, (0.5, 0.9, 0.9), (0.6, 0.91, 0.95)))]
    c = choose(points, jobs)
    assert c["chosen"] == ["model.optimizer.lr=0.02"] and c["ties"] == points[1:]  # tie broken by the best epoch
    assert c["edge"] == ["model.optimizer.lr=0.02 is the largest value of model.optimizer.lr in the grid: the optimum "
                         "may lie beyond it"]
    jobs[1].result["selection"]["last_val_acc1"] = 0.95
    c = choose(points, jobs)
    assert c["chosen"] == points[1] and c["ties"] == [] and c["edge"] == []


def test_tune_grid_takes_hydra_sweeps_and_refuses_a_bad_axis_before_any_run(tmp_path):
    from spt_lightning.config import ConfigError
    from spt_lightning.tune import grid, tune_final

    fixed, points = grid(["task=x", "seed=range(0,2)", "model.optimizer.lr=choice(1e-3,5e-3)"])
    assert fixed == ["task=x"] and len(points) == 4 and ["seed=1", "model.optimizer.lr=0.005"] in points
    with pytest.raises(ConfigError, match="model.optimizer.lr"):
        tune_final([*FAST, "model.optimizer.lrr=1e-3,5e-3"], root=tmp_path / "tf")
    assert not (tmp_path / "tf").exists()


def test_report_pairs_each_init_with_spt_kmeans_over_seeds_and_tests_each_seed_on_its_images(tmp_path):
    """The column: mean difference and a paired t-test over the (task, seed) accuracies (the seeds are the
    replicates); below the table one exact McNemar test per seed (never pooled: the seeds share the images)."""
    from scipy.stats import ttest_rel

    from spt_lightning.report.stats import mcnemar, p_value
    from spt_lightning.report.tables import markdown

    assert mcnemar("1100", "1100") == 1.0 and mcnemar("1" * 20, "0" * 20) == pytest.approx(2 / 2 ** 20)
    assert mcnemar("1" * 5 + "0" * 5, "0" * 10) == pytest.approx(2 / 2 ** 5)
    correct = {"kmeans": ["1" * 18 + "00", "1" * 19 + "0"], "xavier": ["0" * 8 + "1" * 12, "0" * 5 + "1" * 15],
               "random": ["1" * 17 + "000", "1" * 17 + "000"]}
    for init, strings in correct.items():
        for seed, right in enumerate(strings):
            run = _fake("fgvc/cub", right.count("1") / len(right), seed)
            run |= {"config": {"method": {"name": "spt_deep"}, "prompt": {"init": init}}, "test_correct": right,
                    "timings": {"init": {"kmeans": 5.0, "random": 3.0, "xavier": 0.0}[init]}}
            folder = tmp_path / f"{init}-{seed}"
            folder.mkdir()
            (folder / "results.json").write_text(json.dumps(run))
    table = markdown(aggregate(load_runs([tmp_path])), [])
    rows = {line.split(" | ")[4]: line for line in table.splitlines() if "| spt_deep |" in line}
    assert "| 5.0 | ref. |" in rows["kmeans"]
    t = ttest_rel([60.0, 75.0], [90.0, 95.0]).pvalue
    assert f"| 0.0 | -25.00 (p {p_value(t)}) |" in rows["xavier"]
    assert "| 3.0 | -7.50 (p " in rows["random"]
    per_seed = next(line for line in table.splitlines() if line.startswith("- spt_deep / xavier: "))
    assert per_seed == (f"- spt_deep / xavier: fgvc/cub seed 0: {p_value(mcnemar(correct['xavier'][0], correct['kmeans'][0]))}; "
                        f"fgvc/cub seed 1: {p_value(mcnemar(correct['xavier'][1], correct['kmeans'][1]))}")


def test_published_numbers_are_well_formed_and_consistent():
    """Every shipped number names a known method (or an anchor), prompt init, pretrain, task or group, its
    convention and a source; VPT's per-task numbers average to its group means (the paper's Table 1: 78.48 /
    82.43 / 54.98 for VPT-deep); VIPAMIN's overall mean is the 19-task mean of its group means."""
    import csv
    from importlib.resources import files

    from spt_lightning.prototypes.strategies import STRATEGIES
    from spt_lightning.report.published import ANCHORS, NOT_STATED, SELECTIONS, SOURCES, convention, published, weights_of
    from spt_lightning.report.pairing import published_for

    rows = list(csv.DictReader((files("spt_lightning") / "published.csv").open()))
    tasks = {t for ts in catalogue().values() for t in ts}
    overall = {"VTAB mean of 19 tasks", "VTAB mean of 3 groups"}
    conf = Path(files("spt_lightning.conf"))
    for row in rows:
        assert (conf / "method" / f"{row['method']}.yaml").exists() or row["method"] in ANCHORS
        assert (conf / "pretrain" / f"{row['pretrain']}.yaml").exists() and row["init"] in ("", *STRATEGIES)
        assert row["benchmark"] in tasks | set(GROUP_TITLES.values()) | overall and row["source"] in SOURCES
        assert row["convention"].startswith(convention(row["benchmark"]))  # a task row may say over what
        assert 0 < float(row["top1"]) <= 100
        assert row["selection"] in SELECTIONS
        assert row["weights"] in (weights_of(row["pretrain"], row["backbone"]), NOT_STATED)
        assert row["figure"] in ("", "table1a", "table1b", "figure3c", "figure3d") and bool(row["figure"]) == (
            row["source"] in ("spt_page_table1", "spt_page_ablation", "spt_page_ablation_read"))
        if row["source"].startswith("spt_page") and row["method"].startswith("spt_"):  # SPT's own runs
            assert row["selection"] == "test_best"
    assert len(published("vpt_deep", "sup_in21k", "vit_base_patch16_224")) == 24  # 19 VTAB + 5 FGVC tasks
    final = Setting("vpt_deep", "sup_in21k", "vit_base_patch16_224", 50, (("data.protocol", '"final"'),))
    numbers = published_for(final, Entry(standard=True))
    for title, paper in (("VTAB Natural", 78.48), ("VTAB Specialized", 82.43), ("VTAB Structured", 54.98),
                         ("FGVC", 89.11)):
        assert numbers[title][:3] == (pytest.approx(paper, abs=0.05), "computed", "val_last")
    assert published_for(Setting(*final.columns, (("data.protocol", '"select"'),)), Entry(standard=True)) == {}
    assert published_for(final, Entry(standard=False)) == {}  # splits other than the papers': no published number
    for pretrain in ("mae", "mocov3"):
        vipamin = published("spt_shallow", pretrain, "vit_base_patch16_224", init="vipamin")
        groups = [vipamin[f"VTAB {g}"][0] for g in ("Natural", "Specialized", "Structured")]
        assert vipamin["VTAB mean of 19 tasks"][0] == pytest.approx((7 * groups[0] + 4 * groups[1] + 8 * groups[2]) / 19,
                                                                    abs=0.005)


# The means SPT's Tables 2 and 3 print (project page, table2.png / table3.png): our per-task transcription must
# give them back (they are not shipped as rows: a mean is recomputed from its parts).
PRINTED_FGVC_MEANS = {
    ("mae", "full"): 82.80, ("mae", "vpt_shallow"): 57.84, ("mae", "vpt_deep"): 72.02, ("mae", "gated_prompts"): 73.39,
    ("mae", "spt_shallow"): 73.95, ("mae", "spt_deep"): 83.26, ("mocov3", "full"): 84.25,
    ("mocov3", "vpt_shallow"): 79.26, ("mocov3", "vpt_deep"): 83.12, ("mocov3", "gated_prompts"): 83.00,
    ("mocov3", "spt_shallow"): 84.08, ("mocov3", "spt_deep"): 86.00, ("sup_in21k_augreg", "spt_shallow"): 90.10,
    ("sup_in21k_augreg", "spt_deep"): 91.40, ("sup_in21k", "bitfit"): 88.41, ("sup_in21k", "e2vpt"): 89.22,
    ("sup_in21k", "ssf"): 90.72,
}


@pytest.mark.parametrize("pretrain, method", list(PRINTED_FGVC_MEANS))
def test_spts_tables_are_transcribed_so_that_their_means_come_back(pretrain, method):
    from spt_lightning.report.published import computed_mean, published

    numbers = published(method, pretrain, "vit_base_patch16_224")
    mean = computed_mean(numbers, FGVC)
    assert mean is not None and mean.top1 == pytest.approx(PRINTED_FGVC_MEANS[pretrain, method], abs=0.021)


def test_numbers_of_different_selection_or_weights_are_never_averaged():
    from spt_lightning.report.published import Number, computed_mean

    tasks = ["a", "b"]
    same = {"a": Number(80.0, "x", "val_last", "w"), "b": Number(90.0, "x", "val_last", "w")}
    assert computed_mean(same, tasks) == Number(85.0, "computed", "val_last", "w")
    assert computed_mean({**same, "b": Number(90.0, "y", "test_best", "w")}, tasks) is None
    assert computed_mean({**same, "b": Number(90.0, "y", "val_last", "other")}, tasks) is None


def test_a_published_number_meets_runs_of_its_own_weights_and_form_only(monkeypatch):
    import spt_lightning.report.published as published_module
    from spt_lightning.report.pairing import published_for

    final = (("data.protocol", '"final"'),)
    # SPT's sup. IN-21k numbers were measured on the AugReg weights: not beside Google's original ones
    assert "fgvc/cub" in published_for(Setting("spt_deep", "sup_in21k_augreg", "vit_base_patch16_224", 20, final),
                                       Entry(standard=True))
    assert "fgvc/cub" not in published_for(Setting("spt_deep", "sup_in21k", "vit_base_patch16_224", 20, final),
                                           Entry(standard=True))
    # rows quoted without their weights stand beside no run
    assert published_for(Setting("ssf", "sup_in21k", "vit_base_patch16_224", None, final), Entry(standard=True)) == {}
    # an adapter row (of VPT-era tables) is bottleneck 8; LoRA's rows adapt W_q and W_v
    row = {"method": "adapter", "init": "", "pretrain": "sup_in21k", "backbone": "vit_base_patch16_224",
           "benchmark": "fgvc/cub", "top1": "85.0", "convention": "task", "source": "vpt_tasks",
           "selection": "val_last", "weights": "orig_in21k", "figure": "", "setting": ""}
    monkeypatch.setattr(published_module, "rows", lambda: (row, {**row, "method": "lora"}))
    for method, form, other in (("adapter", ("method.bottleneck", "8"), "64"),
                                ("lora", ("method.targets", '["q", "v"]'), '["qkv"]')):
        key = Setting(method, "sup_in21k", "vit_base_patch16_224", None, final + (form,))
        assert published_for(key, Entry(standard=True))["fgvc/cub"].top1 == 85.0
        assert published_for(Setting(*key.columns, final + ((form[0], other),)), Entry(standard=True)) == {}


def test_the_docs_table_of_published_numbers_is_the_one_report_prints(capsys):
    """docs/published.md shows what `report --published` prints from published.csv: every row, each number
    marked with its source, the anchors named as the papers do."""
    from spt_lightning.report import main
    from spt_lightning.report.pairing import published_table

    assert main(["--published"]) == 0
    printed = capsys.readouterr().out.strip()
    docs = Path(__file__).resolve().parents[1] / "docs" / "published.md"
    assert printed == published_table() and printed in docs.read_text()
    rows = {tuple(line.split(" | ")[:2]): line for line in printed.splitlines() if line.startswith("| ")}
    assert "64.09 [" in rows[("| spt_shallow + vipamin", "MAE")] and "79.54 [" in rows[("| VAPT", "MoCo v3")]
    assert "78.49 *c*" in rows[("| vpt_deep", "sup. IN-21k")]  # VPT's Natural mean from its per-task rows
    # SPT's own numbers: chosen on test (†), measured on their weights
    spt_mocov3 = rows[("| spt_deep", "MoCo v3")]
    assert "mocov3_vit_b_300ep" in spt_mocov3 and "86.00 *c* †" in spt_mocov3 and "84.95 [" in spt_mocov3
    assert "augreg_in21k" in rows[("| spt_deep", "sup. IN-21k (AugReg)")]


def test_a_setting_meets_the_published_numbers_of_its_own_prompt_init():
    """SPT-shallow with VIPAMIN's init is compared with VIPAMIN's numbers, with its own (k-means) with SPT's;
    a linear probe (no prompts) with the linear numbers whatever prompt.init says."""
    from spt_lightning.report.pairing import published_for

    def key(method, init, pretrain="mae"):
        return Setting(method, pretrain, "vit_base_patch16_224", 100,
                       (("data.protocol", '"final"'), ("prompt.init", json.dumps(init))))

    assert published_for(key("spt_shallow", "vipamin"), Entry(standard=True))["VTAB Natural"][:2] == (62.60,
                                                                                                 "vipamin_readme")
    vipamin = key("spt_shallow", "vipamin")
    rescaled = Setting(*vipamin.columns, vipamin.config + (("init.vipamin_orth_scale", '"match"'),))
    assert published_for(rescaled, Entry(standard=True)) == {}  # not the form VIPAMIN's authors ran
    assert published_for(key("spt_shallow", "kmeans"), Entry(standard=True))["VTAB Natural"][:3] == (
        62.53, "spt_page_table2", "test_best")
    assert published_for(key("spt_shallow", "random"), Entry(standard=True)) == {}  # nobody published that
    assert published_for(key("linear", "kmeans", "sup_in21k"), Entry(standard=True))["FGVC"][:2] == (79.32,
                                                                                                "protocol_notes")


def test_report_puts_published_numbers_beside_a_matching_setting(tmp_path):
    from spt_lightning.report.tables import markdown

    for method, protocol, standard in (("vpt_deep", "final", True), ("vpt_deep", "select", True),
                                       ("spt_deep", "final", True), ("vpt_deep", "final", False)):
        for seed, acc in ((0, 0.79), (1, 0.81), (1, 0.9)):  # the third repeats seed 1 (read last): flagged, not averaged
            run = _fake("vtab/cifar100", acc, seed, method=method) | {"pretrain": "sup_in21k"}
            run["config"] = {"data": {"protocol": protocol, "fraction": 1.0 if standard else 0.5},
                             "method": {"name": method}}
            run["splits"] = {"standard": standard, "how": "test"}
            folder = tmp_path / f"{method}-{protocol}-{standard}-{seed}-{acc}"
            folder.mkdir()
            (folder / "results.json").write_text(json.dumps(run))
    table = markdown(aggregate(load_runs([tmp_path])), [])
    assert "4 run(s) repeat the seed of another run of their setting and task (counted once)" in table
    beside = [line for line in table.splitlines() if "| vtab/cifar100 | 80.00 |" in line]
    assert beside == ["| vpt_deep | sup_in21k | vit_base_patch16_224 | 10 | vtab/cifar100 | 80.00 | 78.80 | +1.20 | task "
                      "| last epoch after tuning on val | orig_in21k | [1] |"]
    assert "[1] VPT (Jia et al., ECCV 2022" in table
    assert report_main([str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    rows = list(__import__("csv").DictReader((tmp_path / "r" / "report.csv").open()))
    assert sorted((r["method"], r["published"]) for r in rows if r["task"] == "vtab/cifar100") == [
        ("spt_deep", ""), ("vpt_deep", ""), ("vpt_deep", ""), ("vpt_deep", "78.80")]
    assert {r["seeds"] for r in rows if r["task"] == "vtab/cifar100"} == {"2"}  # distinct seeds


@pytest.mark.parametrize("benchmark,tasks", [("fgvc", FGVC), ("vtab", [t for ts in VTAB.values() for t in ts])])
def test_paper_experiments_tune_every_task_of_the_benchmark_on_its_recipe_grid(benchmark, tasks):
    from spt_lightning.config import compose_train as _compose
    from spt_lightning.tune import _recipe_points, _tasks

    fixed = [f"experiment=paper/{benchmark}", "pretrain=mae", "method=spt_deep"]
    found, _ = _tasks(fixed, [[]])
    assert found == [f"task={t}" for t in tasks]
    cfg = _compose([*fixed, found[0]])
    assert cfg.backbone.arch == "vit_base_patch16_224" and cfg.pretrain.name == "mae"
    axes = {key: [str(v) for v in values] for key, values in cfg.recipe.grid.items()}
    points = _recipe_points(cfg)
    assert len(points) == __import__("math").prod(map(len, axes.values())) > 1
    assert all(o.split("=")[1] in axes[o.split("=")[0]] for p in points for o in p)


def test_report_of_a_study_reads_each_tasks_chosen_values_as_a_choice(tmp_path):
    """Final runs whose lr was chosen per task form one setting (group means and all) when they say
    ``tuned``; without it each lr would be a setting of its own."""
    vtab = [t for ts in VTAB.values() for t in ts]
    for tuned in (["model.optimizer.lr"], []):
        runs = []
        for i, task in enumerate(vtab):
            run = _fake(task, 0.5 + 0.01 * i, 0)
            run["config"] = {"tuned": tuned, "model": {"optimizer": {"lr": [1e-3, 5e-3][i % 2]}},
                             "data": {"protocol": "final"}}
            runs.append(run)
        entries = aggregate(runs)
        if tuned:
            (entry,) = entries.values()
            assert entry.groups["VTAB mean of 19 tasks"] == pytest.approx(statistics.mean(
                100 * (0.5 + 0.01 * i) for i in range(19)))
        else:
            assert len(entries) == 2 and all(e.groups["VTAB Natural"] is None for e in entries.values())


def test_a_task_list_naming_an_unknown_task_is_refused_before_any_run(tmp_path):
    from spt_lightning.config import ConfigError
    from spt_lightning.tune import tune_final

    with pytest.raises(ConfigError, match="task=vtab/nope is not an option"):
        tune_final(["debug=fast", "task=demo/synthetic,vtab/nope"], root=tmp_path / "study")
    assert not (tmp_path / "study").exists()
