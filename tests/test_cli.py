"""The command line as users run it: subprocesses of `python -m spt_lightning`. Bad input is tested
in-process (test_runs: one table of cases); here only what needs the real command line."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

FAST = ["task=demo/synthetic", "debug=fast"]


def run_cli(args, tmp_path, check=True):
    env = {**os.environ, "SPT_LOG_DIR": str(tmp_path / "logs"), "SPT_CACHE": str(tmp_path / "cache"),
           "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-m", "spt_lightning", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def _results(tmp_path):
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "logs").rglob("results.json"))]


def test_debug_fast_end_to_end(tmp_path):
    done = run_cli(FAST, tmp_path)
    (results,) = _results(tmp_path)
    out = Path(results["output_dir"])
    assert results["selection"]["epochs"] == 2 and 1 <= results["selection"]["epoch"] <= 2
    assert 0.0 <= results["test"]["acc1"] <= 1.0
    assert results["parameters"]["learnable"] == 2 * 10 * 64 + 64 * 4 + 4
    for line in ("task : demo/synthetic", "selected : the last epoch (2 of 2)", "test : acc1", f"outputs : {out}"):
        assert line in done.stdout
    ckpts = {p.name for p in (out / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and len(ckpts) == 2
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert set(state) == {"model.prompts.embeddings", "model.vit.head.weight", "model.vit.head.bias"}
    # a quiet console: each message once whatever its format (Hydra's "[...][logger][LEVEL] - " or Lightning's
    # "INFO: "), no product tip or torch deprecation, Lightning's notes in the run's log file only
    lines = [re.sub(r"^(INFO|WARNING|ERROR): ", "", line.split("] - ", 1)[-1])
             for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    repeated = {line for line in lines if lines.count(line) > 1 and any(c.isalpha() for c in line)}
    assert not repeated and "Tip:" not in done.stderr and "LeafSpec" not in done.stderr
    for note in ("Seed set to 0", "GPU available", "to estimate number of stepping batches"):
        assert note not in done.stdout + done.stderr and note in (out / "__main__.log").read_text(), note
    assert "Restoring states" not in done.stdout + done.stderr
    init = next(line for line in lines if line.startswith("Prompt init (kmeans): "))
    assert init.startswith("Prompt init (kmeans): 2 layer(s), ") and init.endswith("k-means on cpu, cache miss")


def test_resume_from_checkpoint(tmp_path):
    run_cli([*FAST, "trainer.max_epochs=1"], tmp_path)
    (first,) = _results(tmp_path)
    last = Path(first["output_dir"]) / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["epoch"] == 0 and saved["global_step"] == 4
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    run_cli([*FAST, "trainer.max_epochs=2", f"resume={last}", "overwrite=true"], second_dir)
    (second,) = _results(tmp_path)  # the resumed run writes into its own folder, none elsewhere
    assert second["output_dir"] == first["output_dir"] and second["resumed_from"] == str(last)
    assert not (second_dir / "logs").exists()
    resumed = torch.load(last, weights_only=False)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 8  # went on from step 4, not from 0


def test_help_and_cfg_job(tmp_path):
    usage = run_cli(["--help"], tmp_path).stdout
    assert "python -m spt_lightning" in usage and " _base" not in usage and "--cfg job --resolve" in usage
    assert "  task/fgvc: cars, cub, dogs, flowers, nabirds\n" in usage and "demo, fact, repadapter, spt, spt_fgvc" in usage
    cfg = run_cli(["--cfg", "job", "task=fgvc/cub", "prompt.length=50"], tmp_path).stdout
    assert "name: fgvc/cub" in cfg and "length: 50" in cfg
    for line in ("arch: vit_base_patch16_224", "img_size: 224", "name: spt_fgvc", "epochs: 100", "warmup_epochs: 10"):
        assert f"  {line}\n" in cfg, line  # the headline command shows the paper's setting, not the demo's


def test_folder_task_counts_classes_and_final_protocol_tests_last_epoch(tmp_path):
    from PIL import Image

    data = tmp_path / "my_images"
    for split in ("train", "val", "test"):
        for i, cls in enumerate(("a", "b", "c")):
            (data / split / cls).mkdir(parents=True)
            for j in range(2):
                Image.new("RGB", (40, 40), (80 * i, 10 * j, 0)).save(data / split / cls / f"{j}.png")
    run_cli(["task=folder", f"task.data_dir={data}", "debug=fast", "data.protocol=final"], tmp_path)
    (results,) = _results(tmp_path)
    assert results["config"]["task"]["num_classes"] == 3 and results["protocol"] == "final"
    assert results["selection"]["val_acc1"] is None and results["selection"]["epoch"] == 2
    assert "acc1" in results["test"]
