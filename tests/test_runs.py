"""Trustworthy runs: the prototype cache key, exact resume, run folders that are never overwritten,
interrupted and failed runs recorded, and every bad input named."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf, open_dict
from PIL import Image

from spt_lightning.config import check_overrides, compose_train
from spt_lightning.errors import SptError
from spt_lightning.record import record_outcome
from spt_lightning.runs import RunFolderError
from spt_lightning.train import train

FAST = ["task=demo/synthetic", "debug=fast"]


def _cfg(out: Path, *overrides: str, cache: Path | None = None):
    """The composed config as the CLI builds it (overrides checked first), writing into ``out``."""
    overrides = [*FAST, *overrides]
    check_overrides(overrides)
    cfg = compose_train(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.init.cache_dir = str(cache or out.parent / "prototypes")
    return cfg


def _run(out: Path, *overrides: str, cache: Path | None = None) -> dict:
    """``train`` as the CLI runs it: a failure is recorded in the run folder, then raised."""
    cfg = _cfg(out, *overrides, cache=cache)
    try:
        return train(cfg, [*FAST, *overrides])
    except BaseException as error:
        record_outcome(cfg, error)
        raise


def _images(root: Path, per_class: int = 3, classes: int = 3) -> Path:
    for split in ("train", "val", "test"):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
            for j in range(per_class):
                Image.new("RGB", (40, 40), (80 * c, 20 * j, 40)).save(root / split / f"c{c}" / f"{j}.png")
    return root


def _vtab(data_dir: Path, task: str = "dtd", per_class: int = 2) -> Path:
    root = data_dir / "vtab-1k" / task
    lines = []
    for c in range(3):
        for j in range(per_class):
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 40), (80 * c, 30 * j, 10)).save(root / "images" / f"{c}_{j}.png")
            lines.append(f"images/{c}_{j}.png {c}")
    for name in ("train800.txt", "val200.txt", "train800val200.txt", "test.txt"):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the prototype cache key ----------------------------------------------------------------------------
def test_prototype_cache_key_follows_the_items_the_pass_reads(tmp_path, caplog):
    cache, every = tmp_path / "cache", "init.tokens_per_prompt=null"  # every token: the counts tell the items apart
    tune = _run(tmp_path / "tune", "data.protocol=tune", every, cache=cache)["init"]
    final = _run(tmp_path / "final", "data.protocol=final", every, cache=cache)["init"]
    assert tune["cache"] == final["cache"] == "miss"  # train + val is not train
    assert final["layers"][0]["tokens"] == 192 * 64 and tune["layers"][0]["tokens"] == 128 * 64
    assert _run(tmp_path / "final2", "data.protocol=final", every, cache=cache)["init"]["cache"] == "hit"
    part = _run(tmp_path / "part", "data.fraction=0.25", every, cache=cache)["init"]
    assert part["cache"] == "miss" and part["layers"][0]["tokens"] == 32 * 64
    whole = _run(tmp_path / "all", "data.fraction=1.0", every, cache=cache)["init"]  # reads what the tune run read
    assert whole["cache"] == "hit" and whole["layers"][0]["tokens"] == 128 * 64

    data = _images(tmp_path / "images")
    folder = ["task=folder", f"task.data_dir={data}"]
    assert _run(tmp_path / "f1", *folder, cache=cache)["init"]["cache"] == "miss"
    assert _run(tmp_path / "f2", *folder, cache=cache)["init"]["cache"] == "hit"
    Image.new("RGB", (40, 40)).save(data / "train" / "c0" / "new.png")  # the split changed on disk
    assert _run(tmp_path / "f3", *folder, cache=cache)["init"]["cache"] == "miss"

    for entry in cache.glob("*.pt"):
        entry.write_bytes(b"garbage")  # a corrupt entry is a warned miss, not a crash
    with caplog.at_level("WARNING"):
        assert _run(tmp_path / "f4", *folder, cache=cache)["init"]["cache"] == "miss"
    assert "unreadable" in caplog.text


def test_unwritable_cache_warns_and_the_run_goes_on(tmp_path, caplog):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    with caplog.at_level("WARNING"):
        results = _run(tmp_path / "run", cache=blocked / "cache")
    assert results["status"] == "ok" and "cannot be written" in caplog.text and "init.cache_dir" in caplog.text


# ---- checkpoints, resume and run folders ---------------------------------------------------------------
class CrashAt(L.Callback):
    """Stands for a killed job: raises when the given epoch starts."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"killed in epoch {self.epoch}")


def _killed(folder: Path, *overrides: str, epoch: int = 1) -> None:
    import spt_lightning.build as build

    with pytest.MonkeyPatch.context() as patch:  # the kill is not a setting of the run
        patch.setattr(build, "build_callbacks", lambda c, made=build.build_callbacks: [*made(c), CrashAt(epoch)])
        with pytest.raises(RuntimeError, match="killed"):
            train(_cfg(folder, *overrides))


def test_a_killed_run_resumes_bit_identical_to_an_uninterrupted_one(tmp_path):
    # Prompt dropout and random crops draw from the random state; the order from the epoch's sampler.
    settings = ["trainer.max_epochs=4", "prompt.dropout=0.1", "task.transform=crop", "trainer.limit_val_batches=8",
                "data.num_workers=2"]
    whole = _run(tmp_path / "whole", *settings)

    _killed(tmp_path / "killed", *settings, epoch=2)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    rows_killed = (tmp_path / "killed" / "csv" / "metrics.csv").read_text().splitlines()
    assert torch.load(last, weights_only=False)["epoch"] == 1  # saved after every epoch, val or not

    resumed = _run(tmp_path / "killed", *settings)  # resume=auto: the same folder continues
    assert resumed["resumed_from"] == str(last) and resumed["output_dir"] == str(tmp_path / "killed")
    assert resumed["selection"] == {**whole["selection"], "epochs": 4} and resumed["test"] == whole["test"]
    prompts = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
               for run in (tmp_path / "whole", tmp_path / "killed")]
    for key in prompts[0]:
        assert torch.equal(prompts[0][key], prompts[1][key]), key
    assert json.loads((tmp_path / "killed" / "results.json").read_text())["status"] == "ok"
    # the resumed run appended to the killed run's metrics: the same rows as the uninterrupted run's
    rows = {run: list(csv.DictReader((tmp_path / run / "csv" / "metrics.csv").open())) for run in ("whole", "killed")}
    strip = lambda r: {k: v for k, v in r.items() if k != "init/time"}  # noqa: E731 (a duration)
    assert len(rows_killed) > 2 and [strip(r) for r in rows["killed"]] == [strip(r) for r in rows["whole"]]


def test_protocol_final_saves_every_epoch(tmp_path):
    _run(tmp_path / "run", "data.protocol=final", "trainer.max_epochs=2")
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt"] and torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt",
                                                 weights_only=False)["epoch"] == 1


def test_a_finished_run_is_never_overwritten(tmp_path):
    _run(tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    for overrides in ([], ["prompt.length=0"], ["resume=never"]):
        with pytest.raises(SptError, match=r"holds a finished run|prompt.length=0"):
            _run(tmp_path / "run", *overrides)
        assert _snapshot(tmp_path / "run") == before
    again = _run(tmp_path / "run", "overwrite=true", "seed=1")
    assert again["seed"] == 1 and json.loads((tmp_path / "run" / "results.json").read_text())["seed"] == 1


def test_an_unfinished_run_is_continued_or_refused(tmp_path):
    _killed(tmp_path / "run", "trainer.max_epochs=3")
    with pytest.raises(RunFolderError, match="resume=auto"):
        _run(tmp_path / "run", "resume=never")
    with pytest.raises(RunFolderError, match="does not exist"):
        _run(tmp_path / "other", f"resume={tmp_path / 'nowhere'}")


def test_resume_continues_with_the_runs_own_settings(tmp_path):
    from spt_lightning.runs import own_settings

    run = tmp_path / "run"
    _killed(run, "trainer.max_epochs=3", "task.transform=crop", "data.num_workers=0")
    # the command line's defaults are not the run's: it continues with its own (3 epochs, crop)
    refused = _cfg(tmp_path / "x", f"resume={run}", "task.transform=resize")
    with pytest.raises(RunFolderError, match=r"task.transform=resize would change the run, which was started with "
                                             r"task.transform=crop"):
        own_settings(refused, ["task.transform=resize", f"resume={run}"])
    allowed = own_settings(_cfg(tmp_path / "x", f"resume={run}", "data.num_workers=1"), ["data.num_workers=1"])
    assert allowed.data.num_workers == 1 and allowed.task.transform == "crop"
    results = _run(tmp_path / "x", f"resume={run}")
    assert results["output_dir"] == str(run) and results["config"]["task"]["transform"] == "crop"
    assert results["selection"]["epochs"] == 3 and results["resumed_from"].endswith("last.ckpt")
    assert not (tmp_path / "x").exists()
    # continuing in place (resume=auto) with other settings is refused too
    _killed(tmp_path / "auto", "trainer.max_epochs=3")
    with pytest.raises(RunFolderError, match=r"unfinished run of other settings \(prompt.length: 10 -> 4\)"):
        _run(tmp_path / "auto", "trainer.max_epochs=3", "prompt.length=4")


def test_resume_auto_takes_the_newest_of_last_and_a_slurm_checkpoint(tmp_path):
    from spt_lightning.runs import resume_point

    _run(tmp_path / "run", "data.protocol=final", "trainer.max_epochs=1")
    (tmp_path / "run" / "results.json").unlink()  # as if the job was stopped before it finished
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    hpc = tmp_path / "run" / "hpc_ckpt_1.ckpt"  # what Lightning's SLURM environment saves on preemption
    hpc.write_bytes(last.read_bytes())
    os.utime(last, (time.time() - 60, time.time() - 60))
    assert resume_point(tmp_path / "run", "auto", False) == (hpc, False)
    os.utime(hpc, (time.time() - 120, time.time() - 120))
    assert resume_point(tmp_path / "run", "auto", False) == (last, False)


def test_selection_state_survives_the_resume(tmp_path):
    """The best epoch before the interruption stays the choice unless a later epoch beats it."""
    _killed(tmp_path / "run", "trainer.max_epochs=3", epoch=2)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    (best,) = [v for k, v in state.items() if "val/acc1" in k]
    resumed = _run(tmp_path / "run", "trainer.max_epochs=3")
    assert resumed["selection"]["val_acc1"] >= float(best["best_model_score"])


def test_results_keep_which_test_images_were_right(tmp_path, capsys):
    results = _run(tmp_path / "run", "trainer.limit_test_batches=1.0")
    right = results["test_correct"]
    assert len(right) == 64 and set(right) <= {"0", "1"}
    assert right.count("1") / len(right) == pytest.approx(results["test"]["acc1"])
    assert "test 100% (64 images)" in capsys.readouterr().out  # progress through the test pass too


# ---- training that cannot be trusted stops --------------------------------------------------------------
def test_full_finetuning_follows_timms_no_weight_decay(tmp_path):
    from spt_lightning.module import PromptTuningModule
    from spt_lightning.backbones import Pretrain
    from spt_lightning.build import build_model

    cfg = _cfg(tmp_path, "method=full")
    module = PromptTuningModule(build_model(cfg, Pretrain()), 4, torch.optim.AdamW, finetune_backbone=True)
    names = {id(p): n for n, p in module.model.named_parameters()}
    decayed = [names[id(p)] for g in module.param_groups() if not g["name"].endswith("_no_decay") for p in g["params"]]
    assert "vit.blocks.0.attn.qkv.weight" in decayed
    assert "vit.pos_embed" not in decayed and "vit.cls_token" not in decayed


# ---- bad inputs: one message naming the culprit, nothing else touched ------------------------------------
def _truncated_png(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _case_vtab_list(name: str, text: str, culprits: list[str]):
    """A VTAB task whose split list ``name`` reads ``text``."""
    def case(tmp):
        (_vtab(tmp / "data") / name).write_text(text)
        return ["task=vtab/dtd", f"paths.data_dir={tmp / 'data'}"], [name, *culprits]
    return case


def _case_folder_truncated_image(tmp):
    data = _images(tmp / "images")
    _truncated_png(data / "train" / "c1" / "0.png")
    return ["task=folder", f"task.data_dir={data}"], [str(data / "train" / "c1" / "0.png"), "data.skip_corrupt"]


def _case_other_width_checkpoint(tmp):
    from conftest import tiny_vit

    path = tmp / "narrow.pth"
    torch.save(tiny_vit(embed_dim=32, depth=2).state_dict(), path)
    return ["pretrain=file", f"pretrain.file={path}"], [str(path), "cls_token", "backbone"]


def _case_garbage_resume(tmp):
    bad = tmp / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    return [f"resume={bad}"], [str(bad)]


def _case_other_prompt_length_resume(tmp):
    _run(tmp / "p10", "trainer.max_epochs=1", "prompt.length=10")
    last = tmp / "p10" / "checkpoints" / "last.ckpt"
    return [f"resume={last}", "overwrite=true", "prompt.length=5", "trainer.max_epochs=2"], \
        ["prompt.length=5 would change the run", "prompt.length=10"]


def _case_unknown_task(tmp):
    return ["task=fgvc/nope"], ["task=fgvc/nope", "fgvc/cub", "vtab/dtd"]


def _case_key_typo(tmp):
    return ["prompt.lenght=5"], ["prompt.lenght", "prompt.length"]


CASES = {
    "vtab line without label": _case_vtab_list("train800.txt", "images/0_0.png 0\nimages/0_1.png\n", ["line 2"]),
    "empty train800.txt": _case_vtab_list("train800.txt", "", ["no images"]),
    "empty test.txt": _case_vtab_list("test.txt", "\n", ["no images"]),
    "truncated image in a folder task": _case_folder_truncated_image,
    "pretrain.file of another width": _case_other_width_checkpoint,
    "garbage checkpoint to resume": _case_garbage_resume,
    "checkpoint of P=10 resumed with P=5": _case_other_prompt_length_resume,
    "unknown task": _case_unknown_task,
    "typo in a key": _case_key_typo,
    "prompt.length=abc": lambda tmp: (["prompt.length=abc"], ["prompt.length"]),
    "prompt.init=kmeens": lambda tmp: (["prompt.init=kmeens"], ["prompt.init", "kmeans"]),
    "pretrain.head_feature=mean": lambda tmp: (["pretrain.head_feature=mean"],
                                               ["pretrain.head_feature='mean'", "cls_token", "prompt_patch_mean"]),
    "task.transform=squash": lambda tmp: (["task.transform=squash"], ["squash", "center_crop"]),
    "prompt.length=0": lambda tmp: (["prompt.length=0"], ["prompt.length=0", "method=linear"]),
    "missing dataset folder": lambda tmp: (["task=fgvc/cub", f"paths.data_dir={tmp}/nowhere"],
                                           [f"{tmp}/nowhere/CUB_200_2011", "paths.data_dir"]),
    "data.batch_size=0": lambda tmp: (["data.batch_size=0"], ["data.batch_size"]),
    "init.kmeans_iters=0": lambda tmp: (["init.kmeans_iters=0"], ["init.kmeans_iters"]),
    "init.layer0=cls": lambda tmp: (["init.layer0=cls"], ["init.layer0", "patch_embed"]),
    "trainer.max_epochs=0": lambda tmp: (["trainer.max_epochs=0"], ["trainer.max_epochs"]),
    "folder task without data_dir": lambda tmp: (["task=folder"], ["task.data_dir"]),
    "diverging learning rate": lambda tmp: (["model.optimizer.lr=1e30"], ["learning rate", "step", "model.optimizer.lr"]),
    "finite divergence (lr 1e6)": lambda tmp: (["model.optimizer.lr=1e6"], ["training diverged", "model.optimizer.lr"]),
    "callbacks.ema.decay=2": lambda tmp: (["callbacks=ema", "callbacks.ema.decay=2"], ["callbacks.ema.decay=2"]),
    "callbacks.prompt_analysis.images=0": lambda tmp: (["callbacks=[ema,prompt_analysis]",
                                                        "callbacks.prompt_analysis.images=0"],
                                                       ["callbacks.prompt_analysis.images=0"]),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "finished"
    _run(folder)
    return folder, _snapshot(folder)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_named_and_loses_nothing(case, finished_run, tmp_path):
    folder, before = finished_run
    overrides, culprits = CASES[case](tmp_path)
    out = folder.parent / f"bad-{case.replace(' ', '_')}"
    with pytest.raises(SptError) as raised:
        _run(out, *overrides)
    for culprit in culprits:
        assert culprit in str(raised.value), (culprit, str(raised.value))
    assert _snapshot(folder) == before  # the finished run beside it is untouched
    if (out / "results.json").is_file():
        assert json.loads((out / "results.json").read_text())["status"] == "failed"


def test_skip_corrupt_skips_a_truncated_image_in_a_folder_task(tmp_path, caplog):
    data = _images(tmp_path / "images")
    _truncated_png(data / "train" / "c1" / "0.png")
    with caplog.at_level("WARNING"):
        results = _run(tmp_path / "run", "task=folder", f"task.data_dir={data}", "data.skip_corrupt=true")
    assert results["status"] == "ok" and "skipped unreadable image" in caplog.text


def test_report_names_a_truncated_results_file(tmp_path, capsys):
    from spt_lightning.report import main as report

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text('{"status": "o')
    assert report([str(tmp_path)]) == 2
    assert str(tmp_path / "a" / "results.json") in capsys.readouterr().err


def test_data_check_calls_an_empty_split_a_problem(tmp_path, capsys):
    from spt_lightning.data.__main__ import main as data_main

    (_vtab(tmp_path / "data") / "val200.txt").write_text("")
    assert data_main(["check", "task=vtab/dtd", f"paths.data_dir={tmp_path / 'data'}"]) == 1
    assert "empty split" in capsys.readouterr().out


# ---- the command line: one message, the exit code a scheduler reads -------------------------------------
def _cli(args, cwd: Path, **kwargs):
    env = {**os.environ, "SPT_LOG_DIR": str(cwd / "logs"), "SPT_CACHE": str(cwd / "cache"), "WANDB_MODE": "offline"}
    return subprocess.Popen([sys.executable, "-m", "spt_lightning", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_an_overwrite_that_fails_before_training_leaves_the_finished_run_whole(tmp_path):
    _run(tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SptError, match="garbage.pth"):  # read after the data, before the folder is claimed
        _run(tmp_path / "run", "overwrite=true", "pretrain=file", f"pretrain.file={tmp_path / 'garbage.pth'}")
    assert _snapshot(tmp_path / "run") == before


def _kept(folder: Path) -> dict[str, str]:
    """The run's files (the marker aside: it records the last run to hold the folder)."""
    return {k: v for k, v in _snapshot(folder).items() if k != ".spt_run"}


@pytest.mark.parametrize("overrides, culprit", [
    (["prompt.length=10000"], "tokens were captured"),                # too few tokens: found in the init
    (["model.optimizer.lr=1e6", "trainer.max_epochs=2"], "training diverged"),  # a finite divergence
    (["model.optimizer.lr=1e30"], "learning rate"),                    # NaN at the first step
])
def test_an_overwrite_that_fails_after_the_claim_gives_the_finished_run_back(tmp_path, overrides, culprit):
    _run(tmp_path / "run")
    before = _kept(tmp_path / "run")
    with pytest.raises(SptError, match=culprit):
        _run(tmp_path / "run", "overwrite=true", *overrides)
    assert _kept(tmp_path / "run") == before
    again = _run(tmp_path / "run", "overwrite=true", "seed=1")  # a finished overwrite replaces it
    assert again["seed"] == 1 and not (tmp_path / "run" / ".replaced").exists()


def test_an_overwrite_killed_outright_is_undone_by_the_next_run(tmp_path):
    from spt_lightning.runs import set_aside

    _run(tmp_path / "run")
    before = _kept(tmp_path / "run")
    set_aside(tmp_path / "run")  # what the killed overwrite did at its claim, then its own files
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "epoch000.ckpt").write_bytes(b"half a run")
    with pytest.raises(RunFolderError, match="holds a finished run"):
        _run(tmp_path / "run")
    assert _kept(tmp_path / "run") == before


def test_callbacks_compose_as_a_list(tmp_path):
    results = _run(tmp_path / "run", "callbacks=[ema,prompt_analysis]", "callbacks.ema.decay=0.5")
    assert results["status"] == "ok" and results["config"]["callbacks"]["ema"]["decay"] == 0.5
    assert (tmp_path / "run" / "prompt_analysis.csv").is_file()


def test_a_logger_whose_package_is_missing_names_its_extra(monkeypatch):
    from omegaconf import OmegaConf

    import spt_lightning.build as build

    monkeypatch.setitem(build.EXTRAS, f"{__name__}.needs_a_missing_package", "tensorboard")
    with pytest.raises(SptError, match=r"needs a package that is not installed .*pip install 'spt-lightning\[tensorboard\]'"):
        build.build(OmegaConf.create({"_target_": f"{__name__}.needs_a_missing_package"}))


def needs_a_missing_package():
    raise ModuleNotFoundError("Neither `tensorboard` nor `tensorboardX` is available.")


def test_sigterm_to_the_process_group_with_loader_workers_is_an_interruption(tmp_path):
    job = _cli([*FAST, "trainer.max_epochs=100000", "data.num_workers=2"], tmp_path, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "logs").rglob("last.ckpt")):  # training has started
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[1][-2000:]
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGTERM)  # what SLURM and a terminal do: the whole group, workers included
    out, err = job.communicate(timeout=120)
    assert job.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-2000:]
    (results,) = [json.loads(p.read_text()) for p in (tmp_path / "logs").rglob("results.json")]
    assert results["status"] == "interrupted"
    hint = next(line for line in err.splitlines() if "continue with resume=" in line)
    assert hint.rsplit("resume=", 1)[1] == results["output_dir"]  # the command works as printed


def test_cli_prints_one_message_and_keeps_the_traceback_in_the_log(tmp_path):
    done = _cli([*FAST, "data.batch_size=0"], tmp_path)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 1 and "data.batch_size" in err and "Traceback" not in err, err
    (log_file,) = (tmp_path / "logs").rglob("*.log")
    assert "Traceback" in log_file.read_text() and "data.batch_size" in log_file.read_text()
    typo = _cli([*FAST, "prompt.lenght=5"], tmp_path)
    out, err = typo.communicate(timeout=300)
    assert typo.returncode == 2 and "prompt.length" in err and "Traceback" not in err, err


def test_sigterm_records_an_interrupted_run_and_exits_non_zero(tmp_path):
    job = _cli([*FAST, "trainer.max_epochs=100000"], tmp_path)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "logs").rglob("last.ckpt")):  # training has started
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[1][-2000:]
        time.sleep(0.2)
    job.send_signal(signal.SIGTERM)
    out, err = job.communicate(timeout=120)
    assert job.returncode == 128 + signal.SIGTERM, err[-2000:]
    (results,) = [json.loads(p.read_text()) for p in (tmp_path / "logs").rglob("results.json")]
    assert results["status"] == "interrupted" and "resume=" in err


def test_a_resumed_run_logs_into_its_own_wandb_run(tmp_path):
    offline = ["logger=[csv,wandb]", "logger.wandb.offline=true"]
    _killed(tmp_path / "run", "trainer.max_epochs=3", *offline)
    (first,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    _run(tmp_path / "run", "trainer.max_epochs=3", *offline)
    ids = {p.name.rsplit("-", 1)[1] for p in (tmp_path / "run" / "wandb").glob("offline-run-*")}
    assert ids == {first.name.rsplit("-", 1)[1]}  # `wandb sync` uploads both parts into one run


def test_frozen_prompts_keep_their_init_and_only_the_head_trains(tmp_path):
    """prompt.trainable=false (the paper's Table 1a): the prompts keep the prototypes the init wrote, only the
    head learns, and the checkpoint still holds the prompts (a resumed run must not lose them)."""
    cache = tmp_path / "cache"
    results = _run(tmp_path / "run", "prompt.trainable=false", "prompt.length=3", cache=cache)
    head = 64 * 4 + 4  # the tiny ViT's width x the synthetic task's classes
    assert results["parameters"]["learnable"] == head and results["parameters"]["learnable_without_head"] == 0
    (entry,) = cache.glob("*.pt")
    prototypes = torch.load(entry, weights_only=True)["prompts"]
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(saved["model.prompts.embeddings"], prototypes.to(saved["model.prompts.embeddings"].dtype))
    trained = _run(tmp_path / "trained", "prompt.length=3", cache=cache)
    assert trained["parameters"]["learnable"] == head + 2 * 3 * 64
    with pytest.raises(SptError, match="prompt.trainable='no': expected true or false"):
        _run(tmp_path / "bad", "prompt.trainable=no")


def test_a_run_saved_before_the_callbacks_moved_resumes_and_keeps_its_settings(tmp_path):
    """Saved configs name the callbacks where they lived before callbacks/ (settings.MOVED_TARGETS) and the
    task's layout by its kind (before data/families): such a run continues both ways (resume=auto in place, resume=<folder>), and its settings and digest (a study's
    folder name) are those it was saved with."""
    from spt_lightning.settings import MOVED_TARGETS, digest, settings

    own = ["trainer.max_epochs=2", "callbacks=ema"]
    for run, again in ((tmp_path / "auto", own), (tmp_path / "path", [f"resume={tmp_path / 'path'}"])):
        _killed(run, *own)
        saved = run / ".hydra" / "config.yaml"
        text = saved.read_text()
        for old, new in MOVED_TARGETS.items():
            text = text.replace(new, old)
        text = text.replace("family:\n    _target_: spt_lightning.data.families.Synthetic", "kind: synthetic")
        assert "spt_lightning.ema.TrainableEMA" in text and "spt_lightning.prototypes.PrototypeInit" in text
        assert "kind: synthetic" in text and "families" not in text
        saved.write_text(text)
        old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
        results = _run(run if again is own else tmp_path / "x", *again)
        assert results["status"] == "ok" and results["output_dir"] == str(run)
        assert results["config"]["callbacks"]["ema"]["_target_"] == "spt_lightning.callbacks.TrainableEMA"
        assert settings(results["config"])["callbacks.ema._target_"] == "spt_lightning.ema.TrainableEMA"
    renamed = {**old, "init": {**old["init"], "_target_": "spt_lightning.callbacks.PrototypeInit"},
               "task": {**{k: v for k, v in old["task"].items() if k != "kind"},
                        "family": {"_target_": "spt_lightning.data.families.Synthetic"}}}
    assert digest(renamed) == digest(old) and settings(renamed) == settings(old)


def test_a_failed_folder_run_records_its_counted_classes(tmp_path):
    """task=folder counts its classes; a run that fails later records that count, as its finished peers do,
    so that it differs from them in its lr only, not in num_classes (null) as well."""
    from spt_lightning.settings import settings

    folder = ["task=folder", f"task.data_dir={_images(tmp_path / 'images')}"]
    finished = _run(tmp_path / "ok", *folder)
    with pytest.raises(SptError, match="diverged"):
        _run(tmp_path / "bad", *folder, "model.optimizer.lr=1e30")
    failed = json.loads((tmp_path / "bad" / "results.json").read_text())
    assert failed["status"] == "failed" and failed["config"]["task"]["num_classes"] == 3
    assert finished["config"]["task"]["num_classes"] == 3
    differ = {k for k in settings(failed["config"]).keys() | settings(finished["config"]).keys()
              if settings(failed["config"]).get(k) != settings(finished["config"]).get(k)}
    assert differ == {"model.optimizer.lr"}
